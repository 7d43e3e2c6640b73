//! The agent-facing side of a stdio upstream: Warden holds the MCP session itself (it
//! initialized the child), answers `initialize`, `ping` and `server/discover` from what the
//! child said, and forwards each permitted request with an id of its own, restoring the
//! agent's id in the answer. Notifications are consumed (the child is Warden's session,
//! not the agent's).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use warden_identity::token::AccessClaims;
use warden_mcp::{Message, Permitted};

use super::decide::{self, Caller};
use super::held::{self, Face};
use super::http::UpstreamError;
use super::relay::upstream_failed;
use super::stdio::StdioUpstream;
use super::{McpState, Upstream, is_stateless};
use crate::inspection::gate::ResultGate;

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
    gate: Option<ResultGate>,
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
            &up.name,
            id.as_ref(),
            &UpstreamError::Unreachable("the stdio upstream is starting or restarting".into()),
        );
    };
    let Some(params) = held::decided_params(permitted.bytes()) else {
        return held::refuse_unparsable(id.as_ref());
    };
    // The child's instructions reach the agent's model: inspected like its other messages,
    // when they are about to be shown.
    let instructions = if matches!(method, "initialize" | "server/discover") {
        match inspected_instructions(s, claims, &up.name, init.get("instructions"), id.as_ref()) {
            Ok(i) => i,
            Err(withheld) => return withheld,
        }
    } else {
        None
    };
    let face = Face {
        capabilities: init.get("capabilities"),
        server_info: init.get("serverInfo"),
        instructions: instructions.as_ref(),
        name: &up.name,
    };
    if let Some(r) = held::answer(s, claims, &up.name, id.as_ref(), method, &params, face) {
        return r;
    }
    let mut answer = match child.request(method, &Value::Object(params)).await {
        Ok(a) => a,
        Err(e) => return upstream_failed(&up.name, id.as_ref(), &e),
    };
    let messages =
        || ResultGate::for_messages(&s.authority.inspection, claims, &up.name, "protocol");
    if let Some(kind) = list {
        let snapshot = s.authority.engine.snapshot();
        let pins = &s.authority.inspection.pins;
        let mut filter = |result: &mut serde_json::Map<String, Value>| {
            decide::filter_list(&snapshot, caller, kind, result, pins);
        };
        decide::list_answer(&mut answer, &mut filter, messages().as_ref());
    } else if let Some(g) = gate.or_else(messages) {
        // A decided call's answer through its own gate; a protocol answer as the child's
        // own message.
        g.apply(&mut answer);
    }
    held::restore(&mut answer, id.as_ref(), is_stateless(headers));
    axum::Json(answer).into_response()
}

/// The child's `instructions`, inspected (an annotation is audited, not shown); `Err` is
/// the answer when they are blocked.
fn inspected_instructions(
    s: &McpState,
    claims: &AccessClaims,
    upstream: &str,
    instructions: Option<&Value>,
    id: Option<&warden_mcp::RequestId>,
) -> Result<Option<Value>, Response> {
    let Some(i) = instructions else {
        return Ok(None);
    };
    let Some(gate) =
        ResultGate::for_messages(&s.authority.inspection, claims, upstream, "protocol")
    else {
        return Ok(Some(i.clone()));
    };
    let gate = gate.describing_itself();
    let mut msg = serde_json::json!({"jsonrpc": "2.0", "id": null, "result": {"instructions": i}});
    gate.apply(&mut msg);
    if let Some(i) = msg
        .get_mut("result")
        .and_then(|r| r.get_mut("instructions"))
    {
        return Ok(Some(i.take()));
    }
    held::restore(&mut msg, id, false);
    Err(axum::Json(msg).into_response())
}
