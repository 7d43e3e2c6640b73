//! Tool pins over the admin API (EP-4): `GET /admin/v1/tools` (every upstream's tools
//! listed again, then each with its status), `GET /admin/v1/tools/{upstream}/{tool}` (the
//! approved and the current definition, for a diff), `POST
//! /admin/v1/tools/{upstream}/{tool}/approve` `{"hash": "...", "reason": "..."}` (approves
//! the current definition; `hash`, when given, must be it — what the person reviewed).

// Handlers return a ready `Response` as their error.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_store::ContentStore;

use crate::admin_api::{
    AdminState, ApiResult, admin, audited, body, collapse, err, event, ok, reason_required,
    store_err,
};
use crate::unix_now;

/// Lists every upstream's tools again (all pages) and takes them in.
pub(crate) async fn refresh_all(s: &crate::mcp::McpState) {
    let names: Vec<String> = s.upstreams.keys().cloned().collect();
    for name in names {
        refresh(s, &name).await;
    }
}

/// Lists one upstream's tools again; a failure leaves Warden's view as it was (and a tool
/// never seen stays unusable).
pub(crate) async fn refresh(s: &crate::mcp::McpState, upstream: &str) {
    match crate::mcp::aggregate::fetch_all(s, upstream, "tools/list", "tools").await {
        Ok(tools) => {
            s.authority
                .inspection
                .pins
                .observe_now(upstream, &tools, unix_now())
                .await;
        }
        Err(e) => tracing::warn!(%upstream, "cannot list the upstream's tools: {e}"),
    }
}

pub async fn list(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            refresh_all(&s.mcp).await;
            let pins = s.store.tool_pins().await.map_err(store_err)?;
            Ok(ok(s.mcp.authority.inspection.pins.status(&pins)))
        }
        .await,
    )
}

fn definition(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

pub async fn show(
    State(s): State<Arc<AdminState>>,
    Path((upstream, tool)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            refresh(&s.mcp, &upstream).await;
            let pins = s.store.tool_pins().await.map_err(store_err)?;
            let seen = s.store.tool_sightings().await.map_err(store_err)?;
            let status = s
                .mcp
                .authority
                .inspection
                .pins
                .status(&pins)
                .into_iter()
                .find(|t| t.upstream == upstream && t.tool == tool)
                .ok_or_else(|| {
                    err(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("no tool `{upstream}/{tool}` is known"),
                    )
                })?;
            let pin = pins
                .iter()
                .find(|p| p.upstream == upstream && p.tool == tool);
            let current = seen.iter().find(|d| {
                d.upstream == upstream
                    && d.tool == tool
                    && Some(&d.hash) == status.current_hash.as_ref()
            });
            Ok(ok(json!({
                "status": status,
                "approved": definition(pin.map(|p| p.definition.as_str())),
                "current": definition(current.map(|d| d.definition.as_str())),
            })))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// The hash the person reviewed; the current one when absent.
    #[serde(default)]
    pub hash: Option<String>,
    pub reason: String,
}

async fn approve_inner(s: &AdminState, upstream: &str, tool: &str, req: Request) -> ApiResult {
    let who = admin(s, req.headers()).await?;
    let a: Approve = body(s, req).await?;
    reason_required(&a.reason, "an approval")?;
    let pins = &s.mcp.authority.inspection.pins;
    refresh(&s.mcp, upstream).await;
    let current = pins.current(upstream, tool).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("`{upstream}` does not list a tool `{tool}` now"),
        )
    })?;
    if let Some(h) = &a.hash
        && *h != current
    {
        return Err(err(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the definition of {upstream}/{tool} is {current} now, not the reviewed {h}; \
                 look at it again (`warden tools diff {upstream}/{tool}`)"
            ),
        ));
    }
    let pin = s
        .store
        .approve_tool(upstream, tool, &current, &who.name, unix_now())
        .await
        .map_err(store_err)?;
    pins.approved(&pin);
    audited(
        s,
        event("tool_approved", &who)
            .reason(&a.reason)
            .detail("upstream", upstream)
            .detail("tool", tool)
            .detail("hash", current.as_str()),
    )
    .await?;
    tracing::info!(admin = %who.name, %upstream, %tool, hash = %current, "tool definition approved");
    Ok(ok(pin))
}

pub async fn approve(
    State(s): State<Arc<AdminState>>,
    Path((upstream, tool)): Path<(String, String)>,
    req: Request,
) -> Response {
    collapse(approve_inner(&s, &upstream, &tool, req).await)
}
