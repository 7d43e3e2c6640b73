//! The agent-facing side of a stdio upstream: Warden holds the MCP session itself (it
//! initialized the child), answers `initialize`, `ping` and `server/discover` from what the
//! child said, and forwards each permitted request with an id of its own, restoring the
//! agent's id in the answer. Notifications are consumed (the child is Warden's session,
//! not the agent's).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use warden_identity::token::AccessClaims;
use warden_mcp::{Message, Permitted, RequestId, codes};

use super::decide::{self, Caller};
use super::http::UpstreamError;
use super::stdio::StdioUpstream;
use super::{McpState, Upstream, header_str, rpc_error, upstream_failed};
use crate::unix_now;

/// Protocol versions with an `initialize` handshake that Warden speaks to agents.
const SESSION_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

fn json_answer(id: Option<&RequestId>, result: Value) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "id": id.map_or(Value::Null, RequestId::to_value), "result": result}))
        .into_response()
}

fn session_id() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

#[allow(clippy::too_many_arguments)]
pub async fn forward(
    s: &McpState,
    up: &Upstream,
    child: &Arc<StdioUpstream>,
    claims: &AccessClaims,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    permitted: Permitted,
    list: Option<warden_mcp::ListKind>,
) -> Response {
    let frame = permitted.frame();
    let id = frame.id().cloned();
    let method = match frame.message() {
        Message::Request { method, .. } => method.as_str(),
        // Notifications and answers end here: the child's session is Warden's.
        _ => return StatusCode::ACCEPTED.into_response(),
    };
    let Some(init) = child.init.load_full() else {
        return upstream_failed(
            up,
            id.as_ref(),
            &UpstreamError::Unreachable("the stdio upstream is starting or restarting".into()),
        );
    };
    let stateless = header_str(headers, "mcp-protocol-version").is_some_and(|v| v >= "2026-07-28");
    // The params exactly as decided. The frame parsed them already, so a failure here is a
    // bug; it refuses rather than forward anything else.
    let mut params: Map<String, Value> = match serde_json::from_slice::<Value>(permitted.bytes()) {
        Ok(mut v) => match v.get_mut("params").map(Value::take) {
            None => Map::new(),
            Some(Value::Object(o)) => o,
            Some(_) => return refuse_unparsable(id.as_ref()),
        },
        Err(_) => return refuse_unparsable(id.as_ref()),
    };
    match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| SESSION_VERSIONS.contains(v))
                .unwrap_or("2025-11-25");
            let sid = session_id();
            if !s
                .sessions
                .open(&sid, &claims.client_id, &up.name, unix_now())
            {
                return rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id.as_ref(),
                    codes::INVALID_REQUEST,
                    "too many open sessions; try again later",
                    json!({"reason": "sessions_full"}),
                );
            }
            let mut result = json!({
                "protocolVersion": version,
                "capabilities": init.get("capabilities").cloned().unwrap_or(json!({})),
                "serverInfo": init.get("serverInfo").cloned().unwrap_or(json!({"name": up.name, "version": "unknown"})),
            });
            if let (Some(i), Some(o)) = (init.get("instructions"), result.as_object_mut()) {
                o.insert("instructions".into(), i.clone());
            }
            let mut r = json_answer(id.as_ref(), result);
            if let Ok(v) = HeaderValue::from_str(&sid) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            r
        }
        "ping" => json_answer(id.as_ref(), json!({})),
        "server/discover" => {
            let mut meta = Map::new();
            if let Some(i) = init.get("serverInfo") {
                meta.insert("io.modelcontextprotocol/serverInfo".into(), i.clone());
            }
            json_answer(
                id.as_ref(),
                json!({"resultType": "complete", "supportedVersions": ["2026-07-28"],
                   "capabilities": init.get("capabilities").cloned().unwrap_or(json!({})),
                   "instructions": init.get("instructions"), "ttlMs": 0, "cacheScope": "private",
                   "_meta": meta}),
            )
        }
        _ => {
            // The child was initialized at a session version: drop the stateless `_meta`
            // keys it would not know, keep everything else.
            if let Some(Value::Object(m)) = params.get_mut("_meta") {
                m.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
            }
            let mut answer = match child.request(method, &Value::Object(params)).await {
                Ok(a) => a,
                Err(e) => return upstream_failed(up, id.as_ref(), &e),
            };
            if let Some(o) = answer.as_object_mut() {
                o.insert(
                    "id".into(),
                    id.as_ref().map_or(Value::Null, RequestId::to_value),
                );
            }
            if let Some(Value::Object(result)) = answer.get_mut("result") {
                if let Some(kind) = list {
                    let snapshot = s.authority.engine.snapshot();
                    decide::filter_list(&snapshot, caller, kind, result);
                }
                if stateless && !result.contains_key("resultType") {
                    result.insert("resultType".into(), json!("complete"));
                }
            }
            axum::Json(answer).into_response()
        }
    }
}

fn refuse_unparsable(id: Option<&RequestId>) -> Response {
    rpc_error(
        StatusCode::OK,
        id,
        codes::DENIED,
        "the decided message could not be re-read; nothing was forwarded",
        json!({"reason": "decision_error"}),
    )
}
