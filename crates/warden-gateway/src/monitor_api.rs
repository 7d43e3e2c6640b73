//! The behavioural monitor over the admin API (MO-1): `GET /admin/v1/agents/{id}/baseline`
//! (the learned profile, the risk now, whether the agent is quarantined) and
//! `GET /admin/v1/alerts[?agent=ID&since_ms=T&limit=N]` (alerts and quarantines, oldest
//! first). A quarantine is released with the resume endpoint.

// Handlers return a ready `Response` as their error.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_monitor::Profile;
use warden_store::MonitorStore;

use crate::admin_api::{AdminState, admin, agent_id, collapse, err, ok, store_err};

/// An agent's baseline as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineView {
    pub agent: String,
    pub risk: u8,
    pub quarantined: bool,
    pub profile: Profile,
}

pub async fn baseline(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            let id = agent_id(&id)?;
            let Some(m) = s.mcp.authority.monitoring.monitor() else {
                return Err(err(
                    StatusCode::CONFLICT,
                    "monitor_off",
                    "the behavioural monitor is off ([monitor] enabled = false)",
                ));
            };
            let now = crate::audit::now_ms();
            let Some((profile, risk)) = m.profile(id.as_str(), now) else {
                return Err(err(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("agent {id} has made no call Warden has observed yet"),
                ));
            };
            Ok(ok(BaselineView {
                agent: id.to_string(),
                risk,
                quarantined: m.quarantined(id.as_str()),
                profile,
            }))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub since_ms: i64,
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// One alert as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertView {
    pub id: i64,
    pub time_ms: i64,
    pub agent: String,
    pub risk: u8,
    pub action: String,
    pub signals: Value,
    pub webhook: String,
}

pub async fn alerts(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<AlertQuery>,
    headers: HeaderMap,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            let rows = s
                .store
                .alerts(q.agent.as_deref(), q.since_ms, q.limit.clamp(1, 10_000))
                .await
                .map_err(store_err)?;
            let views: Vec<AlertView> = rows
                .into_iter()
                .map(|a| AlertView {
                    signals: serde_json::from_str(&a.signals).unwrap_or(Value::Null),
                    id: a.id,
                    time_ms: a.time_ms,
                    agent: a.agent,
                    risk: a.risk,
                    action: a.action,
                    webhook: a.webhook,
                })
                .collect();
            Ok(ok(views))
        }
        .await,
    )
}
