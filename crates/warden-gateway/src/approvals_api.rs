//! Approvals over the admin API (HC-1): `GET /admin/v1/approvals[?state=&agent=]`,
//! `GET /admin/v1/approvals/{id}`, `POST /admin/v1/approvals/{id}/approve|deny`
//! `{"reason": "..."}`. Only an approver named on the request may decide it (its admin
//! credential's name); the decision wakes the held call at once and is audited with who and
//! why before it is reported done.

// Handlers return a ready `Response` as their error.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use warden_store::{ApprovalState, ControlStore};

use crate::admin_api::{
    AdminState, ApiResult, Reason, admin, audited, body, collapse, err, event, ok, reason_required,
    store_err,
};
use crate::unix_now;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<ApprovalState>,
    pub agent: Option<String>,
    pub limit: Option<u32>,
}

pub async fn list(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            let Query(q) =
                q.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
            let limit = q.limit.unwrap_or(100).clamp(1, 1000);
            Ok(ok(s
                .store
                .approvals(q.state, q.agent.as_deref(), limit, unix_now())
                .await
                .map_err(store_err)?))
        }
        .await,
    )
}

pub async fn show(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            match s.store.approval(&id, unix_now()).await.map_err(store_err)? {
                Some(a) => Ok(ok(a)),
                None => Err(err(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no approval `{id}`"),
                )),
            }
        }
        .await,
    )
}

async fn decide(s: &AdminState, id: &str, approve: bool, req: Request) -> ApiResult {
    let who = admin(s, req.headers()).await?;
    let r: Reason = body(s, req).await?;
    reason_required(&r.reason, "a decision")?;
    let now = unix_now();
    let a = s
        .store
        .approval(id, now)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            err(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no approval `{id}`"),
            )
        })?;
    if !a.approvers.contains(&who.name) {
        tracing::warn!(admin = %who.name, approval = %id, agent = %a.agent,
            "approval decision refused: not an approver");
        audited(
            s,
            event("approval_refused", &who)
                .agent(&a.agent)
                .reason("not an approver for this agent")
                .detail("approval", id),
        )
        .await?;
        return Err(err(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`{}` may not decide approvals for `{}`; its approvers: {}",
                who.name,
                a.agent,
                a.approvers.join(", ")
            ),
        ));
    }
    let decided = s
        .store
        .decide_approval(id, approve, &who.name, &r.reason, now)
        .await
        .map_err(|e| match e {
            warden_store::StoreError::Invalid(m) => err(StatusCode::CONFLICT, "conflict", m),
            e => store_err(e),
        })?;
    audited(
        s,
        event(
            if approve {
                "approval_granted"
            } else {
                "approval_denied"
            },
            &who,
        )
        .agent(&decided.agent)
        .reason(&r.reason)
        .detail("approval", id)
        .detail("resource", decided.resource.clone())
        .detail("binding", decided.binding.clone()),
    )
    .await?;
    s.approvals.wake(id);
    tracing::info!(admin = %who.name, approval = %id, agent = %decided.agent, approve, reason = %r.reason, "approval decided");
    Ok(ok(decided))
}

pub async fn approve(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(decide(&s, &id, true, req).await)
}

pub async fn deny(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(decide(&s, &id, false, req).await)
}
