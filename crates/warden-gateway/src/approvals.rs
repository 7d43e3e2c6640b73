//! Human checkpoints (HC-1): a `RequireApproval` decision holds the call until an approver
//! decides, or the timeout denies it.
//!
//! An approval is bound to one exact action: its *match key* is SHA-256 over the canonical
//! JSON of agent, action, resource, the digest of the full arguments and task; its
//! *binding* adds the expiry. It lets exactly one call through (it is spent atomically in
//! the store), before its expiry, with those arguments: an agent presenting it
//! (`_meta["warden/approval"]`) for other arguments is refused (`approval_mismatch`).
//! A client that gave up waiting and retries the same call finds the same request (pending
//! or approved) by its match key instead of raising a new one.
//!
//! Requests are limited per agent (pending at once, per hour) so that an agent cannot
//! flood its approvers; every step is audited (requested, granted/denied with who and why,
//! expired; the call's decision record names the approval).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use warden_audit::EventRecord;
use warden_config::ApprovalsConfig;
use warden_core::Decision;
use warden_identity::revocation::Revocations;
use warden_identity::token::AccessClaims;
use warden_store::{ApprovalRecord, ApprovalState, ControlStore, SqliteStore, StoreError};

use crate::audit::{Audit, now_ms};
use crate::unix_now;

/// How often a held call tells a client that asked for progress that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The call in question.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub claims: &'a AccessClaims,
    pub action: &'a str,
    pub resource: &'a str,
    pub arguments: Option<&'a Map<String, Value>>,
    pub stated_reason: Option<&'a str>,
    /// The approval the agent presents, if it names one.
    pub presented: Option<&'a str>,
}

/// Why a held call does not go ahead: a stable reason id and a message for the agent.
#[derive(Debug, Clone)]
pub struct NotApproved {
    pub reason_id: &'static str,
    pub message: String,
    pub approval: Option<String>,
}

/// An approval spent on this call.
#[derive(Debug, Clone)]
pub struct Approved {
    pub id: String,
    pub by: String,
    pub reason: String,
}

/// The approval queue of this Warden.
#[derive(Debug)]
pub struct Approvals {
    store: SqliteStore,
    config: ApprovalsConfig,
    audit: Arc<Audit>,
    /// Held calls wait here; a decision drops the sender, which wakes them.
    waiters: Mutex<HashMap<String, watch::Sender<()>>>,
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The match key of a call (see the module docs).
pub fn match_key(
    agent: &str,
    action: &str,
    resource: &str,
    arguments: Option<&Map<String, Value>>,
    task: &str,
) -> String {
    let digest = arguments.map_or_else(
        || warden_audit::record::args_digest(&Map::new()),
        warden_audit::record::args_digest,
    );
    let v = json!({"agent": agent, "action": action, "resource": resource,
                   "arguments": digest, "task": task});
    hex_sha256(&warden_audit::jcs::to_vec(&v))
}

/// What an approval is bound to: the match key and the expiry.
pub fn binding(match_key: &str, expires_at: i64) -> String {
    hex_sha256(format!("{match_key}:{expires_at}").as_bytes())
}

fn not(reason_id: &'static str, message: impl Into<String>, id: Option<&str>) -> NotApproved {
    NotApproved {
        reason_id,
        message: message.into(),
        approval: id.map(str::to_owned),
    }
}

fn unavailable(e: &StoreError) -> NotApproved {
    tracing::error!("approvals: the store failed: {e}");
    not(
        "approval_unavailable",
        "the approval could not be checked (store unavailable); the call is denied",
        None,
    )
}

impl Approvals {
    pub fn new(store: SqliteStore, config: ApprovalsConfig, audit: Arc<Audit>) -> Self {
        Self {
            store,
            config,
            audit,
            waiters: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &ApprovalsConfig {
        &self.config
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<()>>> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the calls held on approval `id` (it was decided).
    pub fn wake(&self, id: &str) {
        self.waiters().remove(id);
    }

    /// Holds the call until it is approved (`Ok`), or refused: denied, timed out, presented
    /// for another call, rate-limited, or the agent was stopped meanwhile.
    pub async fn hold(
        &self,
        revocations: &Revocations,
        ask: Ask<'_>,
        decision: &Decision,
    ) -> Result<Approved, NotApproved> {
        let claims = ask.claims;
        let agent = claims.client_id.as_str();
        let task = claims.task().map_or("", |t| t.task_id.as_str());
        let key = match_key(agent, ask.action, ask.resource, ask.arguments, task);
        let now = unix_now();
        let found = match ask.presented {
            Some(id) => {
                let a = self
                    .store
                    .approval(id, now)
                    .await
                    .map_err(|e| unavailable(&e))?
                    .ok_or_else(|| {
                        not("approval_unknown", format!("no approval `{id}`"), Some(id))
                    })?;
                if a.agent != agent || a.match_key != key {
                    self.audit.event(
                        EventRecord::new(now_ms(), "approval_mismatch", agent)
                            .agent(agent)
                            .detail("approval", id)
                            .detail("resource", ask.resource),
                    );
                    return Err(not(
                        "approval_mismatch",
                        format!(
                            "approval `{id}` was given for another call (agent, tool, arguments \
                             or task differ); it cannot be used for this one"
                        ),
                        Some(id),
                    ));
                }
                Some(a)
            }
            None => self
                .store
                .live_approval(&key, now)
                .await
                .map_err(|e| unavailable(&e))?,
        };
        let a = match found {
            Some(a) => a,
            None => self.request(ask, decision, &key, now).await?,
        };
        self.settle(revocations, claims, a).await
    }

    /// Raises a new request, within the per-agent limits, audited before anyone is asked.
    async fn request(
        &self,
        ask: Ask<'_>,
        decision: &Decision,
        key: &str,
        now: i64,
    ) -> Result<ApprovalRecord, NotApproved> {
        let claims = ask.claims;
        let agent = claims.client_id.as_str();
        let (asked, pending) = self
            .store
            .approval_counts(agent, now - 3600, now)
            .await
            .map_err(|e| unavailable(&e))?;
        if pending >= self.config.max_pending_per_agent
            || asked >= self.config.max_requests_per_hour
        {
            return Err(not(
                "approval_rate_limited",
                format!(
                    "`{agent}` has {pending} approval request(s) pending and asked {asked} in the \
                     last hour (limits: {} pending, {} per hour); wait for a decision",
                    self.config.max_pending_per_agent, self.config.max_requests_per_hour
                ),
                None,
            ));
        }
        let mut id = [0u8; 12];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        let expires_at = now + i64::try_from(self.config.timeout_secs).unwrap_or(300);
        let rec = ApprovalRecord {
            id: format!("ap_{}", hex::encode(id)),
            agent: agent.to_owned(),
            task: claims.task().map_or("", |t| t.task_id.as_str()).to_owned(),
            action: ask.action.to_owned(),
            resource: ask.resource.to_owned(),
            arguments: ask
                .arguments
                .map_or_else(|| json!({}), |a| self.audit.redact(a)),
            match_key: key.to_owned(),
            binding: binding(key, expires_at),
            reasons: decision.reasons.clone(),
            stated_reason: ask.stated_reason.map(str::to_owned),
            approvers: self.config.approvers_for(agent, &claims.sponsor),
            state: ApprovalState::Pending,
            created_at: now,
            expires_at,
            decided_by: None,
            decided_at: None,
            decision_reason: None,
            used_at: None,
        };
        self.store
            .add_approval(rec.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        self.audit
            .event_durable(
                EventRecord::new(now_ms(), "approval_requested", agent)
                    .agent(agent)
                    .detail("approval", rec.id.clone())
                    .detail("resource", rec.resource.clone())
                    .detail("binding", rec.binding.clone())
                    .detail("approvers", rec.approvers.clone())
                    .detail("expires_at", expires_at),
            )
            .await
            .map_err(|e| {
                tracing::error!("approval request not audited: {e}");
                not(
                    "audit_unavailable",
                    "the approval request could not be audited; the call is denied",
                    Some(&rec.id),
                )
            })?;
        tracing::info!(agent, approval = %rec.id, resource = %rec.resource, approvers = ?rec.approvers,
            "call held for approval");
        Ok(rec)
    }

    /// Waits for approval `a` to be decided (or expire), then spends it if approved.
    async fn settle(
        &self,
        revocations: &Revocations,
        claims: &AccessClaims,
        mut a: ApprovalRecord,
    ) -> Result<Approved, NotApproved> {
        let id = a.id.clone();
        if a.state == ApprovalState::Pending {
            let mut woken = self
                .waiters()
                .entry(id.clone())
                .or_insert_with(|| watch::Sender::new(()))
                .subscribe();
            // Decided between the read and the subscription?
            a = self.reload(&id).await?;
            if a.state == ApprovalState::Pending {
                let left = u64::try_from(a.expires_at - unix_now()).unwrap_or(0);
                let deadline = tokio::time::sleep(Duration::from_secs(left));
                let revoked = revocations.until_revoked(claims, false);
                tokio::pin!(deadline, revoked);
                // Progress for a client that asked for it: at once, then every few seconds.
                let mut tick = tokio::time::interval(PROGRESS_EVERY);
                let (started, total) = (tokio::time::Instant::now(), self.config.timeout_secs);
                let report = crate::mcp::progress::wanted();
                loop {
                    tokio::select! {
                        _ = woken.changed() => break,
                        () = &mut deadline => break,
                        why = &mut revoked => {
                            return Err(not("agent_killed", format!("the held call was dropped: {why}"), Some(&id)));
                        }
                        _ = tick.tick(), if report => {
                            let waited = started.elapsed().as_secs();
                            crate::mcp::progress::notify(
                                waited,
                                Some(total),
                                &format!(
                                    "waiting for approval {id} by {} ({waited} s of {total} s)",
                                    a.approvers.join(" or ")
                                ),
                            );
                        }
                    }
                }
                a = self.reload(&id).await?;
            }
        }
        match a.state {
            ApprovalState::Approved => {
                if binding(&a.match_key, a.expires_at) != a.binding {
                    return Err(not(
                        "approval_mismatch",
                        format!("approval `{id}` does not match its binding"),
                        Some(&id),
                    ));
                }
                match self.store.use_approval(&id, unix_now()).await {
                    Ok(true) => Ok(Approved {
                        id,
                        by: a.decided_by.unwrap_or_default(),
                        reason: a.decision_reason.unwrap_or_default(),
                    }),
                    Ok(false) => Err(not(
                        "approval_used",
                        format!("approval `{id}` was already used or has expired"),
                        Some(&id),
                    )),
                    Err(e) => Err(unavailable(&e)),
                }
            }
            ApprovalState::Denied => Err(not(
                "approval_denied",
                format!(
                    "{} denied the call: {}",
                    a.decided_by.unwrap_or_default(),
                    a.decision_reason.unwrap_or_default()
                ),
                Some(&id),
            )),
            ApprovalState::Used => Err(not(
                "approval_used",
                format!("approval `{id}` was already used; each approval allows one call"),
                Some(&id),
            )),
            ApprovalState::Pending | ApprovalState::Expired => {
                self.wake(&id);
                self.audit.event(
                    EventRecord::new(now_ms(), "approval_expired", &a.agent)
                        .agent(&a.agent)
                        .detail("approval", id.clone()),
                );
                Err(not(
                    "approval_timeout",
                    format!(
                        "nobody decided on approval `{id}` within {} s: denied",
                        self.config.timeout_secs
                    ),
                    Some(&id),
                ))
            }
        }
    }

    async fn reload(&self, id: &str) -> Result<ApprovalRecord, NotApproved> {
        self.store
            .approval(id, unix_now())
            .await
            .map_err(|e| unavailable(&e))?
            .ok_or_else(|| not("approval_unknown", format!("no approval `{id}`"), Some(id)))
    }
}
