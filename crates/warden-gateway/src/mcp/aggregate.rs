//! `/mcp`: one MCP server made of every upstream, with namespaced names. Tools and prompts
//! are `<upstream>.<name>` (`crm.read_contact`); resources keep their URIs and are routed
//! by the upstream that listed them (or whose URI template's fixed prefix matches).
//!
//! The token's audience is `<issuer>/mcp`; its granted actions name upstreams as usual
//! (`crm/read_contact`). Warden holds the agent's session and has its own with each
//! upstream. List calls fan out to the upstreams the task grants anything on, concurrently,
//! and each upstream's entries are filtered exactly as on `/mcp/{upstream}`. A call is
//! decided against its upstream's resource, then the decided params are re-sent with the
//! upstream's own name for the tool — nothing else of the agent's message crosses.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;
use warden_core::ActionKind;
use warden_mcp::{ListKind, Message, Permitted, RequestId, codes};

use super::decide::{self, Caller, Mediation};
use super::held::{self, Face};
use super::local::LocalBinding;
use super::relay::upstream_failed;
use super::trail::{self, Trail};
use super::{
    McpState, Upstream, check_headers, check_origin, check_session, is_stateless, read_frame,
    refuse, rpc_error, stated_reason,
};
use crate::unix_now;

/// The session scope of the aggregate (not a valid upstream name).
pub const SCOPE: &str = "*";

/// Pages of one upstream's list Warden follows before it stops.
const MAX_PAGES: usize = 20;

/// Most resource routes remembered; the table starts over when full.
const MAX_ROUTES: usize = 100_000;

/// Which upstream serves a resource URI, learned from list answers.
#[derive(Debug, Default)]
pub struct Routes {
    /// URI → upstream; `None` when two upstreams list the same URI (ambiguous: refused).
    exact: RwLock<HashMap<String, Option<String>>>,
    /// A URI template's fixed prefix (before the first `{`) → upstream.
    templates: RwLock<Vec<(String, String)>>,
}

/// Where a resource read goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    To(String),
    Ambiguous,
    Unknown,
}

impl Routes {
    fn learn(&self, uri: &str, upstream: &str) {
        let Ok(mut m) = self.exact.write() else {
            return;
        };
        if m.len() >= MAX_ROUTES {
            m.clear();
        }
        match m.get_mut(uri) {
            Some(Some(u)) if u != upstream => {
                m.insert(uri.to_owned(), None);
            }
            Some(_) => {}
            None => {
                m.insert(uri.to_owned(), Some(upstream.to_owned()));
            }
        }
    }

    fn learn_template(&self, template: &str, upstream: &str) {
        let prefix = template.split('{').next().unwrap_or_default();
        let Ok(mut t) = self.templates.write() else {
            return;
        };
        if !t.iter().any(|(p, u)| p == prefix && u == upstream) && t.len() < MAX_ROUTES {
            t.push((prefix.to_owned(), upstream.to_owned()));
        }
    }

    /// The upstream for `uri`: listed exactly, else the longest matching template prefix.
    pub fn route(&self, uri: &str) -> Route {
        if let Ok(m) = self.exact.read()
            && let Some(u) = m.get(uri)
        {
            return u.clone().map_or(Route::Ambiguous, Route::To);
        }
        let Ok(t) = self.templates.read() else {
            return Route::Unknown;
        };
        let mut best: Option<(&str, &str)> = None;
        let mut tied = false;
        for (prefix, up) in t.iter() {
            if !uri.starts_with(prefix.as_str()) {
                continue;
            }
            match best {
                Some((p, u)) if p.len() == prefix.len() => tied |= u != up,
                Some((p, _)) if p.len() > prefix.len() => {}
                _ => {
                    best = Some((prefix, up));
                    tied = false;
                }
            }
        }
        match best {
            None => Route::Unknown,
            Some(_) if tied => Route::Ambiguous,
            Some((_, u)) => Route::To(u.to_owned()),
        }
    }
}

fn face() -> Face<'static> {
    static CAPABILITIES: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
        || json!({"tools": {}, "resources": {}, "prompts": {}, "logging": {}}),
    );
    static INFO: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
        || json!({"name": "warden", "title": "Warden (all upstreams)", "version": env!("CARGO_PKG_VERSION")}),
    );
    Face {
        capabilities: Some(&CAPABILITIES),
        server_info: Some(&INFO),
        instructions: None,
        name: "warden",
    }
}

fn unknown_name(id: Option<&RequestId>, what: &str) -> Response {
    rpc_error(
        StatusCode::OK,
        id,
        codes::INVALID_PARAMS,
        what,
        json!({"reason": "unknown_name"}),
    )
}

/// The Origin check and the caller (a token for `<issuer>/mcp`, or the local binding).
#[allow(clippy::result_large_err)]
fn admit(
    s: &McpState,
    local: Option<&LocalBinding>,
    method: &'static str,
    headers: &HeaderMap,
) -> Result<Arc<warden_identity::token::AccessClaims>, Response> {
    check_origin(s, local, headers)?;
    super::authenticate(s, local, &s.aggregate_resource, SCOPE, method, headers)
}

/// `POST /mcp`.
pub async fn post(
    State(s): State<Arc<McpState>>,
    local: Option<Extension<Arc<LocalBinding>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    super::progress::serve(super::progress::accepts_sse(&headers), async move {
        let local = local.as_deref().map(Arc::as_ref);
        let mut trail = Trail::new(&s, SCOPE, local);
        let r = post_inner(&s, &mut trail, local, &headers, body).await;
        trail.finish(&s, &r);
        r
    })
    .await
}

async fn post_inner(
    s: &Arc<McpState>,
    trail: &mut Trail<'_>,
    local: Option<&LocalBinding>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let claims = match admit(s, local, "POST", headers) {
        Ok(c) => c,
        Err(r) => return super::unread_body(r),
    };
    trail.authenticated(&claims);
    let frame = match read_frame(s, &claims, SCOPE, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Message::Request { method, .. } | Message::Notification { method } = frame.message() {
        trail.method(method);
    }
    super::progress::offer(frame.meta("progressToken"));
    if let Err(r) = check_headers(headers, &frame) {
        return r;
    }
    if let Err(r) = check_session(s, SCOPE, &claims, headers, frame.id()) {
        return r;
    }
    let id = frame.id().cloned();
    let (method, action) = match frame.message() {
        Message::Request { method, action, .. } => (method.as_str(), action),
        // Warden holds the agent's session: notifications and answers end here.
        _ => return StatusCode::ACCEPTED.into_response(),
    };
    let stateless = is_stateless(headers);
    let reason = stated_reason(&frame, headers).map(str::to_owned);
    let reason = reason.as_deref();
    let approval = frame.approval_id().map(str::to_owned);
    let approval = approval.as_deref();
    match decide::mediation(action) {
        Mediation::Protocol => {
            let method = method.to_owned();
            let decision =
                warden_core::Decision::protocol_allow(format!("protocol method {method}"));
            let Some(params) = Permitted::new(frame, decision)
                .ok()
                .and_then(|p| held::decided_params(p.bytes()))
            else {
                return held::refuse_unparsable(id.as_ref());
            };
            held::answer(s, &claims, SCOPE, id.as_ref(), &method, &params, face()).unwrap_or_else(
                || {
                    // `logging/setLevel`: the aggregate sends no log messages; nothing to set.
                    held::json_answer(id.as_ref(), json!({}))
                },
            )
        }
        Mediation::NotMediated => rpc_error(
            StatusCode::OK,
            id.as_ref(),
            codes::METHOD_NOT_FOUND,
            &format!("`{method}` is not mediated by Warden and is not forwarded"),
            json!({"reason": "not_mediated"}),
        ),
        Mediation::List(kind) => {
            let caller = Caller {
                claims: &claims,
                upstream: SCOPE,
                reason,
                now: unix_now(),
                local,
                approval,
                limit_used: 0,
                risk: 0,
            };
            let mut result = list(s, caller, kind).await;
            if stateless {
                result.insert("resultType".into(), json!("complete"));
            }
            held::json_answer(id.as_ref(), Value::Object(result))
        }
        // Completions name their prompt inside `ref`, which the aggregate does not rewrite.
        Mediation::Decide { .. } if method == "completion/complete" => rpc_error(
            StatusCode::OK,
            id.as_ref(),
            codes::METHOD_NOT_FOUND,
            "completion/complete is served at /mcp/<upstream>, not on the aggregate endpoint",
            json!({"reason": "not_mediated"}),
        ),
        Mediation::Decide {
            kind,
            name,
            arguments,
        } => {
            let (up, inner) = match route(s, kind, name) {
                Ok(x) => x,
                Err(what) => return unknown_name(id.as_ref(), &what),
            };
            let caller = Caller {
                claims: &claims,
                upstream: &up.name,
                reason,
                now: unix_now(),
                local,
                approval,
                limit_used: 0,
                risk: 0,
            };
            let snapshot = s.authority.engine.snapshot();
            let (decision, seq) = match trail::decide_and_record(
                s,
                trail,
                &snapshot,
                &caller,
                kind,
                inner,
                arguments,
                id.as_ref(),
            )
            .await
            {
                Ok(x) => x,
                Err(Ok(refusal)) => {
                    return refuse(&frame, &format!("{}/{inner}", up.name), &refusal);
                }
                Err(Err(unavailable)) => return unavailable,
            };
            let recorded_name = inner.to_owned();
            let inner = inner.to_owned();
            let method = method.to_owned();
            let Ok(permitted) = Permitted::new(frame, decision) else {
                return held::refuse_unparsable(id.as_ref());
            };
            let Some(mut params) = held::decided_params(permitted.bytes()) else {
                return held::refuse_unparsable(id.as_ref());
            };
            if kind != ActionKind::ReadResource {
                params.insert("name".into(), Value::String(inner));
            }
            let forwarded = std::time::Instant::now();
            let gate = crate::inspection::gate::ResultGate::new(
                &s.authority.inspection,
                &claims,
                kind,
                &up.name,
                &recorded_name,
                seq,
            );
            let response = super::contain::call(s, &claims, id.as_ref(), None, async {
                match up.request(&method, &Value::Object(params)).await {
                    Ok(mut answer) => {
                        if let Some(g) = &gate {
                            g.apply(&mut answer);
                        }
                        held::restore(&mut answer, id.as_ref(), stateless);
                        axum::Json(answer).into_response()
                    }
                    Err(e) => upstream_failed(&up.name, id.as_ref(), &e),
                }
            })
            .await;
            trail::outcome(s, trail, &caller, seq, &recorded_name, forwarded, &response);
            response
        }
    }
}

/// The upstream and its own name for an aggregate name.
fn route<'s, 'n>(
    s: &'s McpState,
    kind: ActionKind,
    name: &'n str,
) -> Result<(&'s Upstream, &'n str), String> {
    if kind == ActionKind::ReadResource {
        return match s.routes.route(name) {
            Route::To(u) => s
                .upstreams
                .get(&u)
                .map(|up| (up, name))
                .ok_or_else(|| format!("no upstream serves `{name}`")),
            Route::Ambiguous => Err(format!(
                "`{name}` is served by more than one upstream; read it at /mcp/<upstream>"
            )),
            Route::Unknown => Err(format!(
                "no upstream is known to serve `{name}`: list resources first"
            )),
        };
    }
    let what = if kind == ActionKind::GetPrompt {
        "prompt"
    } else {
        "tool"
    };
    name.split_once('.')
        .and_then(|(u, n)| s.upstreams.get(u).map(|up| (up, n)))
        .ok_or_else(|| format!("no {what} `{name}`: names here are `<upstream>.<{what}>`"))
}

fn list_key(kind: ListKind) -> (&'static str, &'static str, ActionKind) {
    match kind {
        ListKind::Tools => ("tools", "tools/list", ActionKind::CallTool),
        ListKind::Prompts => ("prompts", "prompts/list", ActionKind::GetPrompt),
        ListKind::Resources => ("resources", "resources/list", ActionKind::ReadResource),
        ListKind::ResourceTemplates => (
            "resourceTemplates",
            "resources/templates/list",
            ActionKind::ReadResource,
        ),
    }
}

/// Every granted upstream's list, filtered per upstream and namespaced.
async fn list(s: &Arc<McpState>, caller: Caller<'_>, kind: ListKind) -> Map<String, Value> {
    let (key, method, action) = list_key(kind);
    let mut tasks = JoinSet::new();
    for name in s.upstreams.keys() {
        if caller.grants_any_on(action, name) {
            let s = Arc::clone(s);
            let name = name.clone();
            tasks.spawn(async move {
                let items = fetch_all(&s, &name, method, key).await;
                (name, items)
            });
        }
    }
    let mut per_upstream = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((name, Ok(items))) => per_upstream.push((name, items)),
            Ok((name, Err(e))) => {
                tracing::warn!(upstream = %name, "left out of the aggregate {method}: {e}");
            }
            Err(e) => tracing::warn!("aggregate {method} task failed: {e}"),
        }
    }
    per_upstream.sort_by(|a, b| a.0.cmp(&b.0));
    let snapshot = s.authority.engine.snapshot();
    let mut all = Vec::new();
    for (name, items) in per_upstream {
        let caller = Caller {
            upstream: &name,
            ..caller
        };
        // Routes are learned from everything the upstream serves (they are Warden's, not
        // shown to anyone), so a read outside the task is refused as such, not as unknown.
        for item in &items {
            match kind {
                ListKind::Resources => {
                    if let Some(uri) = item.get("uri").and_then(Value::as_str) {
                        s.routes.learn(uri, &name);
                    }
                }
                ListKind::ResourceTemplates => {
                    if let Some(t) = item.get("uriTemplate").and_then(Value::as_str) {
                        s.routes.learn_template(t, &name);
                    }
                }
                ListKind::Tools | ListKind::Prompts => {}
            }
        }
        let mut result = Map::new();
        result.insert(key.into(), Value::Array(items));
        decide::filter_list(
            &snapshot,
            &caller,
            kind,
            &mut result,
            &s.authority.inspection.pins,
        );
        let Some(Value::Array(items)) = result.remove(key) else {
            continue;
        };
        for mut item in items {
            if matches!(kind, ListKind::Tools | ListKind::Prompts) {
                let Some(Value::String(n)) = item.get_mut("name") else {
                    continue;
                };
                *n = format!("{name}.{n}");
            }
            all.push(item);
        }
    }
    let mut out = Map::new();
    out.insert(key.into(), Value::Array(all));
    out
}

/// All pages of one upstream's list (at most [`MAX_PAGES`]).
pub(crate) async fn fetch_all(
    s: &McpState,
    name: &str,
    method: &str,
    key: &str,
) -> Result<Vec<Value>, String> {
    let up = s.upstreams.get(name).ok_or("gone")?;
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let params = match cursor.take() {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let answer = up
            .request(method, &params)
            .await
            .map_err(|e| e.to_string())?;
        let Some(Value::Object(mut result)) = answer.get("result").cloned() else {
            return Err(format!(
                "no result: {}",
                answer.get("error").unwrap_or(&Value::Null)
            ));
        };
        if let Some(Value::Array(page)) = result.remove(key) {
            items.extend(page);
        }
        match result.remove("nextCursor") {
            Some(c @ Value::String(_)) => cursor = Some(c),
            _ => return Ok(items),
        }
    }
    tracing::warn!(upstream = %name, "{method}: stopped after {MAX_PAGES} pages");
    Ok(items)
}

/// `DELETE /mcp`: ends an aggregate session.
pub async fn end(
    State(s): State<Arc<McpState>>,
    local: Option<Extension<Arc<LocalBinding>>>,
    headers: HeaderMap,
) -> Response {
    let local = local.as_deref().map(Arc::as_ref);
    let claims = match admit(&s, local, "DELETE", &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = check_session(&s, SCOPE, &claims, &headers, None) {
        return r;
    }
    if let Some(sid) = super::header_str(&headers, "mcp-session-id") {
        s.sessions.close(sid);
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_prefer_exact_then_longest_template_and_refuse_ambiguity() {
        let r = Routes::default();
        r.learn("file:///a.md", "docs");
        r.learn("file:///b.md", "docs");
        r.learn("file:///b.md", "crm");
        r.learn_template("crm://contacts/{id}", "crm");
        r.learn_template("crm://{kind}/{id}", "other");
        assert_eq!(r.route("file:///a.md"), Route::To("docs".into()));
        assert_eq!(r.route("file:///b.md"), Route::Ambiguous);
        assert_eq!(r.route("crm://contacts/7"), Route::To("crm".into()));
        assert_eq!(r.route("crm://deals/7"), Route::To("other".into()));
        assert_eq!(r.route("mail://x"), Route::Unknown);
        r.learn_template("crm://contacts/{x}", "evil");
        assert_eq!(r.route("crm://contacts/7"), Route::Ambiguous);
    }
}
