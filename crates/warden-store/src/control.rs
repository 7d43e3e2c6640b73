//! Kills (KS-1..KS-3) and approvals (HC-1): SQL and rules, one transaction per call.

use rusqlite::{OptionalExtension, Row, Transaction, params};
use warden_core::{AgentId, AgentRecord, AgentState};

use crate::{ApprovalRecord, ApprovalState, KillRecord, StoreError, agents};

/// Records a kill of each agent and suspends the active ones. All or nothing: an unknown
/// agent fails the whole call.
pub(crate) fn kill(
    tx: &Transaction<'_>,
    ids: &[AgentId],
    mode: &str,
    reason: &str,
    by: &str,
    now: i64,
) -> Result<Vec<AgentRecord>, StoreError> {
    if !["graceful", "forced"].contains(&mode) {
        return Err(StoreError::Invalid(format!(
            "a kill is graceful or forced, not `{mode}`"
        )));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        agents::load(tx, id)?;
        tx.execute(
            "INSERT INTO kills (agent_id, mode, reason, killed_by, killed_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.as_str(), mode, reason, by, now],
        )?;
        tx.execute(
            "UPDATE agents SET state = 'suspended', updated_at = ?2
             WHERE id = ?1 AND state = 'active'",
            params![id.as_str(), now],
        )?;
        out.push(agents::load(tx, id)?);
    }
    Ok(out)
}

/// Resumes a killed or suspended agent: active again (needs a sponsor; revoked is final),
/// and its open kills marked resumed. Its tokens from before the kill stay revoked.
pub(crate) fn resume(
    tx: &Transaction<'_>,
    id: &AgentId,
    by: &str,
    now: i64,
) -> Result<AgentRecord, StoreError> {
    let rec = agents::set_state(tx, id, AgentState::Active, now)?;
    tx.execute(
        "UPDATE kills SET resumed_at = ?2, resumed_by = ?3
         WHERE agent_id = ?1 AND resumed_at IS NULL",
        params![id.as_str(), now, by],
    )?;
    Ok(rec)
}

fn kill_row(r: &Row<'_>) -> rusqlite::Result<KillRecord> {
    Ok(KillRecord {
        id: r.get(0)?,
        agent: r.get(1)?,
        mode: r.get(2)?,
        reason: r.get(3)?,
        killed_by: r.get(4)?,
        killed_at: r.get(5)?,
        resumed_at: r.get(6)?,
        resumed_by: r.get(7)?,
    })
}

/// The latest kill of every agent ever killed.
pub(crate) fn latest_kills(tx: &Transaction<'_>) -> Result<Vec<KillRecord>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT id, agent_id, mode, reason, killed_by, killed_at, resumed_at, resumed_by
         FROM kills k WHERE id = (SELECT MAX(id) FROM kills WHERE agent_id = k.agent_id)
         ORDER BY agent_id",
    )?;
    let rows = stmt.query_map([], kill_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const APPROVAL_COLUMNS: &str = "id, agent_id, task_id, action, resource, arguments, match_key, \
     binding, reasons, stated_reason, approvers, state, created_at, expires_at, decided_by, \
     decided_at, decision_reason, used_at";

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn approval_row(r: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let arguments: String = r.get(5)?;
    let state: String = r.get(11)?;
    Ok(ApprovalRecord {
        id: r.get(0)?,
        agent: r.get(1)?,
        task: r.get(2)?,
        action: r.get(3)?,
        resource: r.get(4)?,
        arguments: serde_json::from_str(&arguments).unwrap_or_default(),
        match_key: r.get(6)?,
        binding: r.get(7)?,
        reasons: json_list(&r.get::<_, String>(8)?),
        stated_reason: r.get(9)?,
        approvers: json_list(&r.get::<_, String>(10)?),
        state: state.parse().unwrap_or(ApprovalState::Denied),
        created_at: r.get(12)?,
        expires_at: r.get(13)?,
        decided_by: r.get(14)?,
        decided_at: r.get(15)?,
        decision_reason: r.get(16)?,
        used_at: r.get(17)?,
    })
}

pub(crate) fn add_approval(tx: &Transaction<'_>, a: &ApprovalRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO approvals ({APPROVAL_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, NULL, NULL, NULL, NULL)"
        ),
        params![
            a.id,
            a.agent,
            a.task,
            a.action,
            a.resource,
            serde_json::to_string(&a.arguments).unwrap_or_else(|_| "{}".into()),
            a.match_key,
            a.binding,
            serde_json::to_string(&a.reasons).unwrap_or_else(|_| "[]".into()),
            a.stated_reason,
            serde_json::to_string(&a.approvers).unwrap_or_else(|_| "[]".into()),
            a.state.as_str(),
            a.created_at,
            a.expires_at,
        ],
    )?;
    Ok(())
}

/// Pending approvals past their expiry become `expired` (a timeout denies).
fn expire(tx: &Transaction<'_>, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE approvals SET state = 'expired', decided_at = expires_at
         WHERE state IN ('pending', 'approved') AND expires_at <= ?1",
        [now],
    )?;
    Ok(())
}

pub(crate) fn approval(
    tx: &Transaction<'_>,
    id: &str,
    now: i64,
) -> Result<Option<ApprovalRecord>, StoreError> {
    expire(tx, now)?;
    Ok(tx
        .query_row(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"),
            [id],
            approval_row,
        )
        .optional()?)
}

/// The newest live (pending or approved, unexpired) approval with this match key.
pub(crate) fn live_approval(
    tx: &Transaction<'_>,
    match_key: &str,
    now: i64,
) -> Result<Option<ApprovalRecord>, StoreError> {
    expire(tx, now)?;
    Ok(tx
        .query_row(
            &format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals
                 WHERE match_key = ?1 AND state IN ('pending', 'approved')
                 ORDER BY state = 'approved' DESC, created_at DESC LIMIT 1"
            ),
            [match_key],
            approval_row,
        )
        .optional()?)
}

/// Approvals, newest first: all, or those in `state`, or one agent's.
pub(crate) fn approvals(
    tx: &Transaction<'_>,
    state: Option<ApprovalState>,
    agent: Option<&str>,
    limit: u32,
    now: i64,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    expire(tx, now)?;
    let mut stmt = tx.prepare(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR agent_id = ?2)
         ORDER BY created_at DESC, id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![state.map(ApprovalState::as_str), agent, limit],
        approval_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many approvals `agent` asked for since `since`, and how many are pending now.
pub(crate) fn approval_counts(
    tx: &Transaction<'_>,
    agent: &str,
    since: i64,
    now: i64,
) -> Result<(u32, u32), StoreError> {
    expire(tx, now)?;
    Ok(tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(state = 'pending'), 0) FROM approvals
         WHERE agent_id = ?1 AND created_at >= ?2",
        params![agent, since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Decides a pending approval. Only a pending, unexpired approval can be decided.
pub(crate) fn decide_approval(
    tx: &Transaction<'_>,
    id: &str,
    approve: bool,
    by: &str,
    reason: &str,
    now: i64,
) -> Result<ApprovalRecord, StoreError> {
    let a =
        approval(tx, id, now)?.ok_or_else(|| StoreError::Invalid(format!("no approval `{id}`")))?;
    if a.state != ApprovalState::Pending {
        return Err(StoreError::Invalid(format!(
            "approval `{id}` is {}, not pending",
            a.state.as_str()
        )));
    }
    tx.execute(
        "UPDATE approvals SET state = ?2, decided_by = ?3, decided_at = ?4, decision_reason = ?5
         WHERE id = ?1",
        params![
            id,
            if approve { "approved" } else { "denied" },
            by,
            now,
            reason
        ],
    )?;
    approval(tx, id, now)?.ok_or_else(|| StoreError::Invalid(format!("no approval `{id}`")))
}

/// Spends an approved approval on the one call it was granted for. `false` when it is not
/// (or no longer) approved and unexpired: each approval lets exactly one call through.
pub(crate) fn use_approval(tx: &Transaction<'_>, id: &str, now: i64) -> Result<bool, StoreError> {
    expire(tx, now)?;
    let n = tx.execute(
        "UPDATE approvals SET state = 'used', used_at = ?2
         WHERE id = ?1 AND state = 'approved' AND expires_at > ?2",
        params![id, now],
    )?;
    Ok(n == 1)
}
