//! The kill switch over the admin API (KS-1, KS-3): `POST /admin/v1/agents/{id}/kill`,
//! `POST /admin/v1/kill` (every agent of a sponsor, or every agent) and the explicit resume;
//! and the circuit breakers (HC-3): `GET /admin/v1/breakers`,
//! `POST /admin/v1/agents/{id}/breakers/reset`.
//!
//! A kill takes effect in this process first — the revocation state is published and every
//! call under way for the agent (or delegated through it) is told at once — and is stored
//! and audited after: the next call is denied before the disk has been touched. If storing
//! or auditing fails the kill still holds here, and the answer says what is missing.

// Handlers return a ready `Response` as their error.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use warden_core::{AgentId, AgentState};
use warden_identity::revocation::Kill;
use warden_store::{AgentStore, ControlStore};

use crate::admin_api::{
    AdminState, ApiResult, Reason, admin, agent_id, audited, body, collapse, err, event, ok,
    reason_required, store_err,
};
use crate::unix_now;

/// How a kill treats work under way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillMode {
    /// Calls in flight and open streams are cut now.
    #[default]
    Forced,
    /// Calls in flight may finish; open event streams still close.
    Graceful,
}

impl KillMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Forced => "forced",
            Self::Graceful => "graceful",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    #[serde(default)]
    pub mode: KillMode,
    /// Why: required, it goes into the audit trail.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalKill {
    #[serde(default)]
    pub mode: KillMode,
    pub reason: String,
    /// Every agent this person sponsors.
    #[serde(default)]
    pub sponsor: Option<String>,
    /// Every agent. Must be said explicitly.
    #[serde(default)]
    pub all: bool,
}

/// Enforces, stores and audits a kill of `ids`.
async fn kill(
    s: &AdminState,
    who: &warden_store::AdminCredential,
    ids: Vec<AgentId>,
    mode: KillMode,
    reason: &str,
    started: Instant,
) -> ApiResult {
    let now = unix_now();
    s.revocations.kill(
        ids.iter().map(AgentId::as_str),
        Kill {
            at: now,
            forced: mode == KillMode::Forced,
        },
    );
    let enforced_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    for id in &ids {
        tracing::warn!(admin = %who.name, agent = %id, mode = mode.as_str(), %reason, "agent killed");
    }
    let stored = s
        .store
        .kill(&ids, mode.as_str(), reason, &who.name, now)
        .await;
    let agents = match stored {
        Ok(a) => {
            s.revocations
                .set_unstored(ids.iter().map(AgentId::as_str), false);
            a
        }
        Err(e) => {
            // Kept in force here, whatever the store's next refresh says, until it is
            // stored (a retried kill) or the agent is resumed.
            s.revocations
                .set_unstored(ids.iter().map(AgentId::as_str), true);
            tracing::error!("kill enforced but not stored: {e}");
            return Err(err(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the kill is in force in this Warden process but could not be stored \
                     ({e}); it would not survive a restart: retry"
                ),
            ));
        }
    };
    for id in &ids {
        audited(
            s,
            event("agent_killed", who)
                .agent(id.as_str())
                .reason(reason)
                .detail("mode", mode.as_str())
                .detail("killed_at", now)
                .detail(
                    "scope",
                    "the agent, every token issued to it or delegated through it until now, \
                     its calls in flight and open streams",
                ),
        )
        .await?;
    }
    Ok(ok(json!({
        "killed": agents,
        "mode": mode.as_str(),
        "killed_at": now,
        "enforced_after_us": enforced_us,
    })))
}

/// `POST /admin/v1/agents/{id}/kill` `{"mode": "forced"|"graceful", "reason": "..."}`.
pub async fn kill_agent(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let started = Instant::now();
    collapse(
        async {
            let who = admin(&s, req.headers()).await?;
            let b: KillRequest = body(&s, req).await?;
            reason_required(&b.reason, "a kill")?;
            let id = agent_id(&id)?;
            // Unknown agents are refused before anything is enforced.
            s.store.agent(&id).await.map_err(store_err)?;
            kill(&s, &who, vec![id], b.mode, &b.reason, started).await
        }
        .await,
    )
}

/// `POST /admin/v1/kill` `{"sponsor": "..."}` or `{"all": true}`, with mode and reason.
pub async fn kill_many(State(s): State<Arc<AdminState>>, req: Request) -> Response {
    let started = Instant::now();
    collapse(
        async {
            let who = admin(&s, req.headers()).await?;
            let b: GlobalKill = body(&s, req).await?;
            reason_required(&b.reason, "a kill")?;
            if b.all == b.sponsor.is_some() {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "say whose agents: `sponsor` or `all: true` (one of them)",
                ));
            }
            let ids: Vec<AgentId> = s
                .store
                .agents()
                .await
                .map_err(store_err)?
                .into_iter()
                .filter(|a| a.state != AgentState::Revoked)
                .filter(|a| b.sponsor.as_ref().is_none_or(|sp| a.sponsors.contains(sp)))
                .map(|a| a.id)
                .collect();
            if ids.is_empty() {
                return Err(err(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no agent matches: nothing was killed",
                ));
            }
            kill(&s, &who, ids, b.mode, &b.reason, started).await
        }
        .await,
    )
}

/// The explicit, audited resume (KS-3): the agent is active again; tokens from before a
/// kill stay revoked, so it starts over with new ones.
pub(crate) async fn resume(s: &AdminState, id: &str, req: Request) -> ApiResult {
    let who = admin(s, req.headers()).await?;
    let r: Reason = body(s, req).await.unwrap_or_default();
    let id = agent_id(id)?;
    let rec = s
        .store
        .resume(&id, &who.name, unix_now())
        .await
        .map_err(store_err)?;
    s.revocations.resumed(rec.id.as_str());
    // MO-1: a person releases a quarantine: the risk starts again from 0.
    let released = s.mcp.authority.monitoring.release(rec.id.as_str());
    tracing::info!(admin = %who.name, agent = %rec.id, reason = %r.reason, "agent resumed");
    audited(
        s,
        event("agent_resumed", &who)
            .agent(rec.id.as_str())
            .reason(&r.reason)
            .detail("risk_reset", released),
    )
    .await?;
    Ok((StatusCode::OK, Json(rec)).into_response())
}

/// `GET /admin/v1/breakers`: every breaker counting something (open, half-open, or closed
/// with failures or denials in its window) and every agent's incidents.
pub async fn breakers(
    State(s): State<Arc<AdminState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            let (breakers, incidents) = s.breakers.list();
            Ok(ok(json!({"breakers": breakers, "incidents": incidents})))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerReset {
    /// Why: required, it goes into the audit trail.
    pub reason: String,
    /// One breaker (`upstream/tool`, or `*` for the one over all tools); default: all of
    /// the agent's, and its incident count.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `POST /admin/v1/agents/{id}/breakers/reset` `{"reason": "...", "scope": "crm/x"}`: a
/// person closes an agent's breakers. Its autonomy is raised separately
/// (`PUT /admin/v1/agents/{id}/autonomy`).
pub async fn reset_breakers(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(
        async {
            let who = admin(&s, req.headers()).await?;
            let b: BreakerReset = body(&s, req).await?;
            reason_required(&b.reason, "a reset")?;
            let id = agent_id(&id)?;
            let closed = s.breakers.reset(id.as_str(), b.scope.as_deref());
            tracing::info!(admin = %who.name, agent = %id, closed, reason = %b.reason, "breakers reset");
            audited(
                &s,
                event("breaker_reset", &who)
                    .agent(id.as_str())
                    .reason(&b.reason)
                    .detail("scope", b.scope.as_deref().unwrap_or("all"))
                    .detail("closed", closed),
            )
            .await?;
            Ok(ok(json!({"agent": id, "closed": closed})))
        }
        .await,
    )
}
