//! Sessions Warden holds itself, not the upstream: stdio upstreams (Warden initialized the
//! child) and the aggregate `/mcp` (many upstreams behind one face). Warden answers
//! `initialize`, `ping` and `server/discover` from what it says about itself.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use warden_identity::token::AccessClaims;
use warden_mcp::{RequestId, codes};

use super::{McpState, rpc_error};
use crate::unix_now;

/// Protocol versions with an `initialize` handshake that Warden speaks to agents.
const SESSION_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// What a Warden-held session says it is.
#[derive(Debug, Clone, Copy)]
pub struct Face<'a> {
    pub capabilities: Option<&'a Value>,
    pub server_info: Option<&'a Value>,
    pub instructions: Option<&'a Value>,
    /// Used when there is no `server_info`.
    pub name: &'a str,
}

/// A JSON-RPC result answer.
pub fn json_answer(id: Option<&RequestId>, result: Value) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "id": id.map_or(Value::Null, RequestId::to_value), "result": result}))
        .into_response()
}

fn session_id() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// Answers the protocol methods of a held session; `None` for every other method. `scope`
/// binds a new session (an upstream name, or the aggregate's).
pub fn answer(
    s: &McpState,
    claims: &AccessClaims,
    scope: &str,
    id: Option<&RequestId>,
    method: &str,
    params: &Map<String, Value>,
    face: Face<'_>,
) -> Option<Response> {
    let server_info = || {
        face.server_info
            .cloned()
            .unwrap_or_else(|| json!({"name": face.name, "version": "unknown"}))
    };
    let capabilities = || face.capabilities.cloned().unwrap_or_else(|| json!({}));
    Some(match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| SESSION_VERSIONS.contains(v))
                .unwrap_or(SESSION_VERSIONS[0]);
            let sid = session_id();
            if !s.sessions.open(&sid, &claims.client_id, scope, unix_now()) {
                return Some(rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    codes::INVALID_REQUEST,
                    "too many open sessions; try again later",
                    json!({"reason": "sessions_full"}),
                ));
            }
            let mut result = json!({
                "protocolVersion": version,
                "capabilities": capabilities(),
                "serverInfo": server_info(),
            });
            if let (Some(i), Some(o)) = (face.instructions, result.as_object_mut()) {
                o.insert("instructions".into(), i.clone());
            }
            let mut r = json_answer(id, result);
            if let Ok(v) = HeaderValue::from_str(&sid) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            r
        }
        "ping" => json_answer(id, json!({})),
        "server/discover" => {
            let mut meta = Map::new();
            meta.insert("io.modelcontextprotocol/serverInfo".into(), server_info());
            json_answer(
                id,
                json!({"resultType": "complete", "supportedVersions": ["2026-07-28"],
                   "capabilities": capabilities(),
                   "instructions": face.instructions, "ttlMs": 0, "cacheScope": "private",
                   "_meta": meta}),
            )
        }
        _ => return None,
    })
}

/// The params exactly as decided, for re-sending under Warden's own id. The frame parsed
/// them already, so `None` here is a bug; callers refuse rather than forward anything else.
pub fn decided_params(permitted_bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut v = serde_json::from_slice::<Value>(permitted_bytes).ok()?;
    match v.get_mut("params").map(Value::take) {
        None => Some(Map::new()),
        Some(Value::Object(mut o)) => {
            // Upstreams are spoken to at a session version: drop the stateless `_meta`
            // keys they would not know, keep everything else.
            if let Some(Value::Object(m)) = o.get_mut("_meta") {
                m.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
            }
            Some(o)
        }
        Some(_) => None,
    }
}

pub fn refuse_unparsable(id: Option<&RequestId>) -> Response {
    rpc_error(
        StatusCode::OK,
        id,
        codes::DENIED,
        "the decided message could not be re-read; nothing was forwarded",
        json!({"reason": "decision_error"}),
    )
}

/// Puts the agent's id back into an upstream's answer and, for stateless clients, the
/// `resultType` they expect.
pub fn restore(answer: &mut Value, id: Option<&RequestId>, stateless: bool) {
    if let Some(o) = answer.as_object_mut() {
        o.insert("id".into(), id.map_or(Value::Null, RequestId::to_value));
    }
    if stateless
        && let Some(Value::Object(result)) = answer.get_mut("result")
        && !result.contains_key("resultType")
    {
        result.insert("resultType".into(), json!("complete"));
    }
}
