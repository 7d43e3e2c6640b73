//! AuthZEN Authorization API 1.0 over HTTP (PE-7): `POST /access/v1/evaluation`,
//! `POST /access/v1/evaluations`, `GET /.well-known/authzen-configuration`.

use std::sync::Arc;

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use warden_core::{Decision, Effect};
use warden_policy::Engine;
use warden_policy::authzen::{self, Batch, Mapping};

/// What the AuthZEN handlers need.
#[derive(Debug)]
pub struct AuthzenState {
    pub engine: Arc<Engine>,
    pub mapping: Mapping,
    pub max_body: usize,
    pub api_key: Option<warden_config::Secret>,
    pub base_url: String,
    pub audit: Arc<crate::audit::Audit>,
}

const REQUEST_ID: &str = "x-request-id";

fn json_response(status: StatusCode, body: &Value, request_id: Option<&HeaderValue>) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(id) = request_id {
        resp.headers_mut().insert(REQUEST_ID, id.clone());
    }
    resp
}

fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: Option<&HeaderValue>,
) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
        request_id,
    )
}

/// Constant-time comparison, so the key cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(state: &AuthzenState, headers: &HeaderMap) -> bool {
    let Some(key) = &state.api_key else {
        return true;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let given = given.strip_prefix("Bearer ").unwrap_or(given);
    same(given.as_bytes(), key.expose().as_bytes())
}

/// Reads a JSON body: right content type, within the size limit, valid JSON.
async fn json_body(state: &AuthzenState, req: Request) -> Result<Value, Response> {
    let id = req.headers().get(REQUEST_ID).cloned();
    if !authorized(state, req.headers()) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key (Authorization: Bearer <key>)",
            id.as_ref(),
        ));
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/json",
            id.as_ref(),
        ));
    }
    let too_big = |id: Option<&HeaderValue>| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the request body exceeds {} bytes", state.max_body),
            id,
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body) {
        return Err(too_big(id.as_ref()));
    }
    let bytes = to_bytes(req.into_body(), state.max_body)
        .await
        .map_err(|_| too_big(id.as_ref()))?;
    if bytes.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body is empty",
            id.as_ref(),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("the request body is not valid JSON: {e}"),
            id.as_ref(),
        )
    })
}

/// One decision as AuthZEN JSON. Allow is `{"decision": true}`; anything else is false,
/// with the reasons (and, for approval, who may approve) in `context`.
fn decision_json(d: &Decision) -> Value {
    match d.effect {
        Effect::Allow => json!({"decision": true}),
        Effect::Deny => json!({
            "decision": false,
            "context": {"reason_admin": {"en": d.reasons.join("; ")}},
        }),
        Effect::RequireApproval => json!({
            "decision": false,
            "context": {
                "reason_admin": {"en": d.reasons.join("; ")},
                "warden": {
                    "approval_required": true,
                    "approvers": d.approval.as_ref().map(|a| a.approvers.clone()).unwrap_or_default(),
                },
            },
        }),
    }
}

fn log_decision(d: &Decision, subject: &str, action: &str, resource: &str) {
    tracing::debug!(
        effect = %d.effect,
        subject,
        action,
        resource,
        determining = ?d.determining,
        "authzen decision"
    );
}

fn decide(state: &AuthzenState, e: &authzen::Evaluation) -> Decision {
    let started = std::time::Instant::now();
    let snapshot = state.engine.snapshot();
    let d = snapshot.evaluate_authzen(&state.mapping, e);
    log_decision(&d, &e.subject.id, &e.action.name, &e.resource.id);
    // An external PEP asked: the subject is who it says it is asking about.
    let mut r = crate::audit::from_claims(None, "authzen", "pep");
    r.agent = Some(e.subject.id.clone());
    r.action.clone_from(&e.action.name);
    r.resource = format!("{}/{}", e.resource.ty, e.resource.id);
    let reason_id = if d.effect == warden_core::Effect::Allow {
        "allowed"
    } else {
        "policy_denied"
    };
    let mut r = crate::audit::with_decision(r, &d, reason_id, snapshot.version());
    r.latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    state.audit.record(r);
    d
}

pub async fn evaluation(State(state): State<Arc<AuthzenState>>, req: Request) -> Response {
    let id = req.headers().get(REQUEST_ID).cloned();
    let body = match json_body(&state, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match authzen::parse_evaluation(&body) {
        Ok(e) => json_response(
            StatusCode::OK,
            &decision_json(&decide(&state, &e)),
            id.as_ref(),
        ),
        Err(bad) => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &bad.0,
            id.as_ref(),
        ),
    }
}

pub async fn evaluations(State(state): State<Arc<AuthzenState>>, req: Request) -> Response {
    let id = req.headers().get(REQUEST_ID).cloned();
    let body = match json_body(&state, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match authzen::parse_batch(&body) {
        Ok(Batch::Single(e)) => json_response(
            StatusCode::OK,
            &decision_json(&decide(&state, &e)),
            id.as_ref(),
        ),
        Ok(Batch::Many { items, semantic }) => {
            // One snapshot for the whole batch: a reload mid-batch cannot mix two sets.
            let snapshot = state.engine.snapshot();
            let answers = authzen::answer_batch(&items, semantic, |e| {
                let d = snapshot.evaluate_authzen(&state.mapping, e);
                log_decision(&d, &e.subject.id, &e.action.name, &e.resource.id);
                d
            });
            let evaluations: Vec<Value> = answers
                .iter()
                .map(|a| match a {
                    Ok(d) => decision_json(d),
                    Err(bad) => json!({
                        "decision": false,
                        "context": {"error": {"code": "invalid_request", "message": bad.0}},
                    }),
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"evaluations": evaluations}),
                id.as_ref(),
            )
        }
        Err(bad) => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &bad.0,
            id.as_ref(),
        ),
    }
}

pub async fn metadata(State(state): State<Arc<AuthzenState>>, headers: HeaderMap) -> Response {
    let base = state.base_url.trim_end_matches('/');
    json_response(
        StatusCode::OK,
        &json!({
            "policy_decision_point": base,
            "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
            "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        }),
        headers.get(REQUEST_ID),
    )
}

/// Any other method on an AuthZEN path.
pub async fn method_not_allowed() -> Response {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "use POST with a JSON body",
        None,
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}
