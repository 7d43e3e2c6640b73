//! Taints (IO-1) and tool pins (EP-4): SQL, one transaction per call.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::{StoreError, TaintRecord, ToolDefinition, ToolPin};

pub(crate) fn taint(tx: &Transaction<'_>, t: &TaintRecord) -> Result<(), StoreError> {
    // A newer taint of the same task replaces the older one and extends it.
    tx.execute(
        "INSERT INTO taints (agent_id, task_id, source, finding, decision_seq, tainted_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (agent_id, task_id) DO UPDATE SET source = excluded.source,
             finding = excluded.finding, decision_seq = excluded.decision_seq,
             tainted_at = excluded.tainted_at,
             expires_at = MAX(taints.expires_at, excluded.expires_at)",
        params![
            t.agent,
            t.task,
            t.source,
            t.finding,
            t.decision_seq.and_then(|s| i64::try_from(s).ok()),
            t.tainted_at,
            t.expires_at
        ],
    )?;
    Ok(())
}

fn taint_row(r: &Row<'_>) -> rusqlite::Result<TaintRecord> {
    Ok(TaintRecord {
        agent: r.get(0)?,
        task: r.get(1)?,
        source: r.get(2)?,
        finding: r.get(3)?,
        decision_seq: r
            .get::<_, Option<i64>>(4)?
            .and_then(|s| u64::try_from(s).ok()),
        tainted_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

/// Live taints (expired ones are deleted on the way).
pub(crate) fn taints(tx: &Transaction<'_>, now: i64) -> Result<Vec<TaintRecord>, StoreError> {
    tx.execute("DELETE FROM taints WHERE expires_at <= ?1", [now])?;
    let mut stmt = tx.prepare(
        "SELECT agent_id, task_id, source, finding, decision_seq, tainted_at, expires_at
         FROM taints ORDER BY tainted_at",
    )?;
    let rows = stmt.query_map([], taint_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ends the taints of an agent (of one task, or all); returns how many.
pub(crate) fn clear_taints(
    tx: &Transaction<'_>,
    agent: &str,
    task: Option<&str>,
) -> Result<usize, StoreError> {
    Ok(match task {
        Some(t) => tx.execute(
            "DELETE FROM taints WHERE agent_id = ?1 AND task_id = ?2",
            params![agent, t],
        )?,
        None => tx.execute("DELETE FROM taints WHERE agent_id = ?1", [agent])?,
    })
}

fn pin_row(r: &Row<'_>) -> rusqlite::Result<ToolPin> {
    Ok(ToolPin {
        upstream: r.get(0)?,
        tool: r.get(1)?,
        hash: r.get(2)?,
        definition: r.get(3)?,
        approved_by: r.get(4)?,
        approved_at: r.get(5)?,
    })
}

pub(crate) fn pins(tx: &Transaction<'_>) -> Result<Vec<ToolPin>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT upstream, tool, hash, definition, approved_by, approved_at
         FROM tool_pins ORDER BY upstream, tool",
    )?;
    let rows = stmt.query_map([], pin_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Approves the definition last seen of `upstream/tool`, if its hash is `hash`.
pub(crate) fn approve_tool(
    tx: &Transaction<'_>,
    upstream: &str,
    tool: &str,
    hash: &str,
    by: &str,
    now: i64,
) -> Result<ToolPin, StoreError> {
    let seen: Option<String> = tx
        .query_row(
            "SELECT definition FROM tool_sightings WHERE upstream = ?1 AND tool = ?2 AND hash = ?3",
            params![upstream, tool, hash],
            |r| r.get(0),
        )
        .optional()?;
    let Some(definition) = seen else {
        return Err(StoreError::Invalid(format!(
            "`{upstream}/{tool}` with definition {hash} has not been seen; run `warden tools list` \
             and approve the hash it shows"
        )));
    };
    tx.execute(
        "INSERT INTO tool_pins (upstream, tool, hash, definition, approved_by, approved_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (upstream, tool) DO UPDATE SET hash = excluded.hash,
             definition = excluded.definition, approved_by = excluded.approved_by,
             approved_at = excluded.approved_at",
        params![upstream, tool, hash, definition, by, now],
    )?;
    Ok(ToolPin {
        upstream: upstream.to_owned(),
        tool: tool.to_owned(),
        hash: hash.to_owned(),
        definition,
        approved_by: by.to_owned(),
        approved_at: now,
    })
}

/// Records what an upstream lists now; returns the tools whose definition changed since
/// they were last seen (new tools included).
pub(crate) fn saw_tools(
    tx: &Transaction<'_>,
    upstream: &str,
    tools: &[ToolDefinition],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut changed = Vec::new();
    for t in tools {
        let old: Option<String> = tx
            .query_row(
                "SELECT hash FROM tool_sightings WHERE upstream = ?1 AND tool = ?2",
                params![upstream, t.tool],
                |r| r.get(0),
            )
            .optional()?;
        if old.as_deref() == Some(t.hash.as_str()) {
            tx.execute(
                "UPDATE tool_sightings SET last_seen = ?3 WHERE upstream = ?1 AND tool = ?2",
                params![upstream, t.tool, now],
            )?;
            continue;
        }
        tx.execute(
            "INSERT INTO tool_sightings (upstream, tool, hash, definition, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (upstream, tool) DO UPDATE SET hash = excluded.hash,
                 definition = excluded.definition, first_seen = excluded.first_seen,
                 last_seen = excluded.last_seen",
            params![upstream, t.tool, t.hash, t.definition, now],
        )?;
        changed.push(t.tool.clone());
    }
    Ok(changed)
}

pub(crate) fn sightings(tx: &Transaction<'_>) -> Result<Vec<ToolDefinition>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT upstream, tool, hash, definition, last_seen FROM tool_sightings
         ORDER BY upstream, tool",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ToolDefinition {
            upstream: r.get(0)?,
            tool: r.get(1)?,
            hash: r.get(2)?,
            definition: r.get(3)?,
            seen_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
