//! The forwarding half of the per-upstream endpoint: the permitted bytes sent upstream and
//! the answer relayed back (list answers filtered), and the session's GET stream and DELETE.

use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use warden_identity::token::AccessClaims;
use warden_mcp::{Permitted, RequestId, codes};

use super::decide::{self, Caller};
use super::http::{self, FORWARDED_RESPONSE_HEADERS, HttpUpstream, UpstreamError};
use super::local::LocalBinding;
use super::trail::Trail;
use super::{McpState, Upstream, UpstreamLink, admit, check_session, header_str, rpc_error};
use crate::inspection::InspectedSse;
use crate::inspection::gate::ResultGate;
use crate::unix_now;

/// Sends the permitted bytes upstream and relays the answer (filtered for list calls).
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    s: &McpState,
    up: &Upstream,
    http: &HttpUpstream,
    claims: &AccessClaims,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    permitted: Permitted,
    list: Option<warden_mcp::ListKind>,
    initialize: bool,
    gate: Option<ResultGate>,
) -> Response {
    let id = permitted.frame().id().cloned();
    let answer = match http
        .send(
            Method::POST,
            headers,
            Bytes::copy_from_slice(permitted.bytes()),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => return upstream_failed(&up.name, id.as_ref(), &e),
    };
    let (parts, body) = answer.into_parts();
    if initialize
        && parts.status.is_success()
        && let Some(sid) = parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        && !s
            .sessions
            .open(sid, &claims.client_id, &up.name, unix_now())
    {
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            id.as_ref(),
            codes::INVALID_REQUEST,
            "too many open sessions; try again later",
            json!({"reason": "sessions_full"}),
        );
    }
    let out = relayed_head(&parts);
    let body = match (list, gate) {
        (None, None) => Body::new(body),
        (None, Some(gate)) => {
            let max = s.authority.inspection.config.max_result_bytes;
            // Room for the JSON around the text the limit counts.
            let max_event = max.saturating_mul(2).saturating_add(64 << 10);
            if http::is_sse(&parts.headers) {
                Body::new(InspectedSse::new(Body::new(body), gate, max_event))
            } else {
                let raw = match read_answer(http, body, max_event).await {
                    Ok(raw) => raw,
                    Err(e) => return upstream_failed(&up.name, id.as_ref(), &e),
                };
                match serde_json::from_slice::<Value>(&raw) {
                    Ok(mut v) => {
                        gate.apply(&mut v);
                        Body::from(v.to_string())
                    }
                    // Not JSON: it cannot be inspected, so it is not shown.
                    Err(_) => {
                        return upstream_failed(
                            &up.name,
                            id.as_ref(),
                            &UpstreamError::Body("the answer is not JSON".into()),
                        );
                    }
                }
            }
        }
        (Some(kind), _) => {
            let raw = match read_answer(http, body, http::MAX_READ_ANSWER).await {
                Ok(raw) => raw,
                Err(e) => return upstream_failed(&up.name, id.as_ref(), &e),
            };
            let snapshot = s.authority.engine.snapshot();
            // Every result in the answer is filtered, whatever its id: an upstream cannot
            // slip an unfiltered list past Warden under another id.
            let filter = |v: &mut Value| {
                if let Some(Value::Object(result)) = v.get_mut("result") {
                    decide::filter_list(
                        &snapshot,
                        caller,
                        kind,
                        result,
                        &s.authority.inspection.pins,
                    );
                }
            };
            if http::is_sse(&parts.headers) {
                Body::from(http::rewrite_sse(&String::from_utf8_lossy(&raw), filter))
            } else {
                match serde_json::from_slice::<Value>(&raw) {
                    Ok(mut v) => {
                        filter(&mut v);
                        Body::from(v.to_string())
                    }
                    // Not JSON: nothing can be filtered, so nothing is shown.
                    Err(_) => {
                        return upstream_failed(
                            &up.name,
                            id.as_ref(),
                            &UpstreamError::Body("the list answer is not JSON".into()),
                        );
                    }
                }
            }
        }
    };
    out.body(body)
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// The upstream answer's status and the headers that may cross back to the agent.
pub(super) fn relayed_head(parts: &axum::http::response::Parts) -> axum::http::response::Builder {
    let mut out = Response::builder().status(parts.status);
    if let Some(h) = out.headers_mut() {
        for name in FORWARDED_RESPONSE_HEADERS {
            if let Some(v) = parts.headers.get(name) {
                h.insert(name, v.clone());
            }
        }
    }
    out
}

/// The whole answer body, at most `max` bytes, within the upstream's timeout: an upstream
/// that sends a head and then stalls must not hold the call (found by the fault matrix,
/// tests/fault_matrix.rs).
async fn read_answer<B>(http: &HttpUpstream, body: B, max: usize) -> Result<Bytes, UpstreamError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    match tokio::time::timeout(http.timeout, to_bytes(Body::new(body), max)).await {
        Ok(Ok(raw)) => Ok(raw),
        Ok(Err(_)) => Err(UpstreamError::Body(
            "the answer is too large or cut off".into(),
        )),
        Err(_) => Err(UpstreamError::Timeout(http.timeout)),
    }
}

pub(crate) fn upstream_failed(
    upstream: &str,
    id: Option<&RequestId>,
    e: &UpstreamError,
) -> Response {
    tracing::warn!(%upstream, "upstream call failed: {e}");
    rpc_error(
        StatusCode::BAD_GATEWAY,
        id,
        codes::UPSTREAM_FAILED,
        &format!("upstream `{upstream}`: {e}"),
        json!({"reason": "upstream_failed"}),
    )
}

/// `GET /mcp/{server}`: the server-to-client SSE stream of a session.
pub async fn open_stream(
    State(s): State<Arc<McpState>>,
    Path(server): Path<String>,
    local: Option<Extension<Arc<LocalBinding>>>,
    headers: HeaderMap,
) -> Response {
    let local = local.as_deref().map(Arc::as_ref);
    relay_recorded(&s, local, &server, Method::GET, &headers).await
}

/// `DELETE /mcp/{server}`: ends a session.
pub async fn end_session(
    State(s): State<Arc<McpState>>,
    Path(server): Path<String>,
    local: Option<Extension<Arc<LocalBinding>>>,
    headers: HeaderMap,
) -> Response {
    let local = local.as_deref().map(Arc::as_ref);
    let r = relay_recorded(&s, local, &server, Method::DELETE, &headers).await;
    if r.status().is_success()
        && let Some(sid) = header_str(&headers, "mcp-session-id")
    {
        s.sessions.close(sid);
    }
    r
}

/// A GET or DELETE relayed (or refused), with its one decision record.
async fn relay_recorded(
    s: &McpState,
    local: Option<&LocalBinding>,
    server: &str,
    method: Method,
    headers: &HeaderMap,
) -> Response {
    let mut trail = Trail::new(s, server, local);
    trail.method(if method == Method::GET {
        "GET stream"
    } else {
        "DELETE session"
    });
    let r = relay_bodyless(s, &mut trail, local, server, method, headers).await;
    trail.finish(s, &r);
    r
}

async fn relay_bodyless(
    s: &McpState,
    trail: &mut Trail<'_>,
    local: Option<&LocalBinding>,
    server: &str,
    method: Method,
    headers: &HeaderMap,
) -> Response {
    let (up, claims) = match admit(s, local, server, method_name(&method), headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    trail.authenticated(&claims);
    if headers.get("mcp-session-id").is_none() {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            codes::INVALID_REQUEST,
            "Mcp-Session-Id is required",
            json!({"reason": "session_required"}),
        );
    }
    if let Err(r) = check_session(s, &up.name, &claims, headers, None) {
        return r;
    }
    let http = match &up.link {
        UpstreamLink::Http(h) => h,
        UpstreamLink::Stdio(_) => {
            // Warden holds stdio sessions itself: no stream to open; deleting forgets it.
            if method == Method::DELETE
                && let Some(sid) = header_str(headers, "mcp-session-id")
            {
                s.sessions.close(sid);
                return StatusCode::NO_CONTENT.into_response();
            }
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
    };
    let stream = method == Method::GET;
    match http.send(method, headers, Bytes::new()).await {
        Ok(answer) => {
            let (parts, body) = answer.into_parts();
            let r = relayed_head(&parts)
                .body(Body::new(body))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
            if stream {
                super::contain::stream(s, &claims, r)
            } else {
                r
            }
        }
        Err(e) => upstream_failed(&up.name, None, &e),
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::DELETE => "DELETE",
        _ => "POST",
    }
}
