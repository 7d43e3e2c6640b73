//! Tainted tasks over the admin API (IO-1): `GET /admin/v1/taints[?agent=ID]` (the live
//! taints), `POST /admin/v1/agents/{id}/untaint` `{"task": "...", "reason": "..."}` (ends
//! one task's taint, or every taint of the agent without `task`; audited).
//!
//! A taint ends the store's copy first and the decision path's copy after: if the store
//! cannot be written, the taint stays in force everywhere (fail closed).

// Handlers return a ready `Response` as their error.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use warden_store::ContentStore;

use crate::admin_api::{
    AdminState, ApiResult, admin, agent_id, audited, body, collapse, err, event, ok,
    reason_required, store_err,
};
use crate::unix_now;

/// One live taint, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaintView {
    pub agent: String,
    pub task: String,
    /// The resource whose content carried the injection.
    pub source: String,
    /// The rules that fired.
    pub finding: String,
    pub expires_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaintQuery {
    #[serde(default)]
    pub agent: Option<String>,
}

pub async fn list(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<TaintQuery>,
    headers: HeaderMap,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            let all = s.mcp.authority.inspection.taints.all(unix_now());
            let views: Vec<TaintView> = all
                .into_iter()
                .filter(|(a, _)| q.agent.as_deref().is_none_or(|want| want == a))
                .map(|(agent, t)| TaintView {
                    agent,
                    task: t.task,
                    source: t.source,
                    finding: t.finding,
                    expires_at: t.expires_at,
                })
                .collect();
            Ok(ok(views))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Untaint {
    /// The task whose taint ends; every task of the agent when absent.
    #[serde(default)]
    pub task: Option<String>,
    pub reason: String,
}

async fn untaint_inner(s: &AdminState, id: &str, req: Request) -> ApiResult {
    let who = admin(s, req.headers()).await?;
    let u: Untaint = body(s, req).await?;
    reason_required(&u.reason, "ending a taint")?;
    let id = agent_id(id)?;
    let agent = id.as_str();
    let taints = &s.mcp.authority.inspection.taints;
    let live = taints
        .all(unix_now())
        .into_iter()
        .filter(|(a, t)| a == agent && u.task.as_deref().is_none_or(|k| k == t.task))
        .count();
    if live == 0 {
        let what = u
            .task
            .as_deref()
            .map_or_else(String::new, |t| format!(" task `{t}`"));
        return Err(err(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("agent `{agent}`{what} is not tainted (`warden agent taints`)"),
        ));
    }
    s.store
        .clear_taints(agent, u.task.as_deref())
        .await
        .map_err(store_err)?;
    let cleared = taints.clear(agent, u.task.as_deref());
    audited(
        s,
        event("agent_untainted", &who)
            .agent(agent)
            .reason(&u.reason)
            .detail("task", u.task.clone().unwrap_or_else(|| "*".into()))
            .detail("cleared", cleared),
    )
    .await?;
    tracing::info!(admin = %who.name, %agent, task = ?u.task, cleared, "taint ended by a person");
    Ok(ok(
        serde_json::json!({"agent": agent, "task": u.task, "cleared": cleared}),
    ))
}

pub async fn untaint(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(untaint_inner(&s, &id, req).await)
}
