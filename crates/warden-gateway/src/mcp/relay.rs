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
    // Answers whose `instructions` are the server's self-description.
    let describes_itself = initialize
        || matches!(permitted.frame().message(),
            warden_mcp::Message::Request { method, .. } if method == "server/discover");
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
    let max_event = max_event(s);
    let body = match list {
        None => {
            let decided = gate.is_some();
            // The answer to a decided call has its own gate; any other answer (to a
            // protocol request: `initialize`'s instructions reach the model too) is
            // inspected as the upstream's own messages.
            let gate = gate.or_else(|| {
                let g = ResultGate::for_messages(
                    &s.authority.inspection,
                    claims,
                    &up.name,
                    "protocol",
                )?;
                Some(if describes_itself {
                    g.describing_itself()
                } else {
                    g
                })
            });
            match gate {
                None => Body::new(body),
                Some(gate) if http::is_sse(&parts.headers) => {
                    Body::new(InspectedSse::new(Body::new(body), gate, max_event))
                }
                Some(gate) => {
                    let raw = match read_answer(http, body, max_event).await {
                        Ok(raw) => raw,
                        Err(e) => return upstream_failed(&up.name, id.as_ref(), &e),
                    };
                    match serde_json::from_slice::<Value>(&raw) {
                        Ok(mut v) => {
                            gate.apply(&mut v);
                            Body::from(v.to_string())
                        }
                        // No body (a notification's 202): nothing to show or inspect.
                        Err(_) if raw.is_empty() && !decided => Body::empty(),
                        // Not JSON: it cannot be inspected, so it is not shown.
                        Err(_) => return not_json(&up.name, id.as_ref(), parts.status),
                    }
                }
            }
        }
        Some(kind) => {
            let raw = match read_answer(http, body, http::MAX_READ_ANSWER).await {
                Ok(raw) => raw,
                Err(e) => return upstream_failed(&up.name, id.as_ref(), &e),
            };
            let snapshot = s.authority.engine.snapshot();
            let pins = &s.authority.inspection.pins;
            let mut filter = |result: &mut serde_json::Map<String, Value>| {
                decide::filter_list(&snapshot, caller, kind, result, pins);
            };
            let gate =
                ResultGate::for_messages(&s.authority.inspection, claims, &up.name, "protocol");
            // Every result in the answer is filtered, whatever its id: an upstream cannot
            // slip an unfiltered list past Warden under another id, in a batch, or in
            // another shape; what else it sends along is inspected.
            let mut each = |v: &mut Value| decide::list_answer(v, &mut filter, gate.as_ref());
            if http::is_sse(&parts.headers) {
                Body::from(http::rewrite_sse(&String::from_utf8_lossy(&raw), each))
            } else {
                match serde_json::from_slice::<Value>(&raw) {
                    Ok(mut v) => {
                        each(&mut v);
                        Body::from(v.to_string())
                    }
                    // Not JSON: nothing can be filtered, so nothing is shown.
                    Err(_) => return not_json(&up.name, id.as_ref(), parts.status),
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

/// The most bytes one inspected answer (or one event of it) may hold: the inspection limit
/// on its text, with room for the JSON around it.
fn max_event(s: &McpState) -> usize {
    let max = s.authority.inspection.config.max_result_bytes;
    max.saturating_mul(2).saturating_add(64 << 10)
}

/// An answer whose body is not JSON: withheld. An error status is kept (a client acts on a
/// 404 for its session, say) with a JSON-RPC error in place of the body; a success becomes
/// a 502.
fn not_json(upstream: &str, id: Option<&RequestId>, status: StatusCode) -> Response {
    if status.is_success() {
        return upstream_failed(
            upstream,
            id,
            &UpstreamError::Body("the answer is not JSON".into()),
        );
    }
    tracing::warn!(%upstream, %status, "upstream answered with an error whose body is not JSON");
    rpc_error(
        status,
        id,
        codes::UPSTREAM_FAILED,
        &format!(
            "upstream `{upstream}` answered HTTP {status}; its body is not JSON and was withheld"
        ),
        json!({"reason": "upstream_failed"}),
    )
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
    let answer = match http.send(method, headers, Bytes::new()).await {
        Ok(answer) => answer,
        Err(e) => return upstream_failed(&up.name, None, &e),
    };
    let (parts, body) = answer.into_parts();
    let body = if !parts.status.is_success() {
        // A refusal (405: the upstream offers no stream; 404: the session is gone): the
        // status is what a client acts on; the body is not shown.
        Body::empty()
    } else if !stream {
        Body::new(body)
    } else if !http::is_sse(&parts.headers) {
        return upstream_failed(
            &up.name,
            None,
            &UpstreamError::Body("the event stream is not text/event-stream".into()),
        );
    } else {
        // IO-1: what the upstream sends on its own (sampling and elicitation requests, log
        // lines, answers replayed on resumption) is inspected like any answer.
        match ResultGate::for_messages(&s.authority.inspection, &claims, &up.name, "stream") {
            Some(gate) => Body::new(InspectedSse::new(Body::new(body), gate, max_event(s))),
            None => Body::new(body),
        }
    };
    let r = relayed_head(&parts)
        .body(body)
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
    if stream {
        super::contain::stream(s, &claims, r)
    } else {
        r
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::DELETE => "DELETE",
        _ => "POST",
    }
}
