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
    let face = Face {
        capabilities: init.get("capabilities"),
        server_info: init.get("serverInfo"),
        instructions: init.get("instructions"),
        name: &up.name,
    };
    if let Some(r) = held::answer(s, claims, &up.name, id.as_ref(), method, &params, face) {
        return r;
    }
    let mut answer = match child.request(method, &Value::Object(params)).await {
        Ok(a) => a,
        Err(e) => return upstream_failed(&up.name, id.as_ref(), &e),
    };
    if let (Some(kind), Some(Value::Object(result))) = (list, answer.get_mut("result")) {
        let snapshot = s.authority.engine.snapshot();
        decide::filter_list(
            &snapshot,
            caller,
            kind,
            result,
            &s.authority.inspection.pins,
        );
    }
    if let Some(g) = &gate {
        g.apply(&mut answer);
    }
    held::restore(&mut answer, id.as_ref(), is_stateless(headers));
    axum::Json(answer).into_response()
}
