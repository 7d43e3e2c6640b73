//! The MCP gateway (PEP, issue 4): `/mcp/{upstream}` speaks MCP Streamable HTTP to agents
//! and forwards to the upstream only what the task token grants and the Policy Engine
//! allows, with the upstream's own credential.
//!
//! Per request, in this order (each step refuses with a precise error and forwards nothing):
//! 1. `Origin`, if present, must be the issuer's or configured (DNS-rebinding protection).
//! 2. The task token (and its DPoP proof) must be valid for this upstream's resource URL;
//!    otherwise HTTP 401 with `WWW-Authenticate` pointing to the RFC 9728 metadata.
//! 3. The body is one strict JSON-RPC message within the size limit (no duplicate keys).
//! 4. `Mcp-Method` / `Mcp-Name` headers, when sent (required from 2026-07-28), must match
//!    the body.
//! 5. An `Mcp-Session-Id` must be a session this agent opened on this upstream through
//!    Warden (HTTP 404 otherwise).
//! 6. `tools/call`, `resources/read`, `prompts/get`: granted by the token **and** allowed by
//!    the PE with the real arguments. List calls are forwarded and their answers filtered.
//!    Protocol methods pass; every other method is refused (`-32601`, `not_mediated`).
//!
//! What is forwarded is exactly the bytes that were decided on ([`warden_mcp::Permitted`]).

// The `Err` of the admission steps is the HTTP answer itself, built only on refusal.
#![allow(clippy::result_large_err)]

pub mod aggregate;
mod contain;
pub mod decide;
mod held;
pub mod http;
pub mod local;
pub(crate) mod progress;
mod relay;
pub mod session;
pub mod stdio;
mod stdio_front;
mod trail;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{Value, json};
use warden_config::{Config, Transport};
use warden_identity::token::AccessClaims;
use warden_identity::verifier::Presentation;
use warden_mcp::{Frame, Message, Permitted, RequestId, codes, error_response};

use self::decide::{Caller, Mediation, Refusal};
use self::http::{HttpUpstream, UpstreamError};
use self::local::LocalBinding;
use self::session::Sessions;
use self::trail::Trail;
use crate::inspection::gate::ResultGate;
use crate::oauth::{self, Authority};
use crate::unix_now;

/// The header an agent may state its reason in (instead of `_meta["warden/reason"]`).
pub const REASON_HEADER: &str = "warden-reason";

/// Everything the MCP endpoints need.
#[derive(Debug)]
pub struct McpState {
    pub authority: Arc<Authority>,
    pub upstreams: HashMap<String, Upstream>,
    /// `<issuer>/mcp`: the audience of tokens for the aggregate endpoint.
    pub aggregate_resource: String,
    /// Which upstream serves a resource URI on the aggregate endpoint.
    pub routes: aggregate::Routes,
    pub sessions: Sessions,
    /// Allowed `Origin` values (the issuer's origin first).
    pub origins: Vec<String>,
    pub max_body: usize,
}

/// One upstream: its resource URL (the token audience) and how to reach it.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub resource: String,
    pub link: UpstreamLink,
}

impl Upstream {
    /// One request in a session Warden holds with the upstream: the whole JSON-RPC answer.
    pub async fn request(&self, method: &str, params: &Value) -> Result<Value, UpstreamError> {
        match &self.link {
            UpstreamLink::Http(h) => h.request(method, params).await,
            UpstreamLink::Stdio(c) => c.request(method, params).await,
        }
    }
}

/// How Warden reaches an upstream.
#[derive(Debug)]
pub enum UpstreamLink {
    /// Streamable HTTP: sessions and bytes pass through.
    Http(Box<HttpUpstream>),
    /// A supervised child process Warden initialized itself; Warden answers `initialize`.
    Stdio(Arc<stdio::StdioUpstream>),
}

impl McpState {
    /// Builds the upstreams from the config; secrets are read now (a missing one is an
    /// error at start, not at the first call).
    pub fn new(config: &Config, authority: Arc<Authority>) -> anyhow::Result<Self> {
        let mut upstreams = HashMap::new();
        for (name, u) in &config.upstreams {
            let mut child_env = u.env.clone();
            let credential = match &u.credential {
                None => None,
                Some(c) => {
                    let secret = c
                        .secret
                        .resolve()
                        .map_err(|e| anyhow::anyhow!("upstreams.{name}.credential: {e}"))?;
                    let value = format!("{}{}", c.prefix, secret.expose());
                    if let Some(var) = &c.env {
                        child_env.insert(var.clone(), value.clone());
                    }
                    match &c.header {
                        Some(h) => Some((
                            HeaderName::from_bytes(h.as_bytes())
                                .map_err(|e| anyhow::anyhow!("upstreams.{name}: {e}"))?,
                            {
                                let mut v = HeaderValue::from_str(&value).map_err(|_| {
                                    anyhow::anyhow!(
                                        "upstreams.{name}.credential: not a valid header value"
                                    )
                                })?;
                                v.set_sensitive(true);
                                v
                            },
                        )),
                        None => None,
                    }
                }
            };
            let timeout = Duration::from_secs(u.timeout_secs);
            let link = match u.transport() {
                Some(Transport::Http { url }) => UpstreamLink::Http(Box::new(
                    HttpUpstream::new(url, credential, timeout, u.ca_file.as_deref())
                        .map_err(|e| anyhow::anyhow!("upstreams.{name}: {e}"))?,
                )),
                Some(Transport::Stdio { command }) => {
                    UpstreamLink::Stdio(stdio::StdioUpstream::start(stdio::Launch {
                        name: name.clone(),
                        command: command.to_owned(),
                        args: u.args.clone(),
                        env: child_env,
                        cwd: u.cwd.clone(),
                        timeout,
                    }))
                }
                None => anyhow::bail!("upstreams.{name}: set `url` or `command`"),
            };
            upstreams.insert(
                name.clone(),
                Upstream {
                    name: name.clone(),
                    resource: format!("{}/mcp/{name}", authority.issuer),
                    link,
                },
            );
        }
        let mut origins = vec![origin_of(&authority.issuer)];
        origins.extend(config.server.allowed_origins.iter().cloned());
        Ok(Self {
            aggregate_resource: format!("{}/mcp", authority.issuer),
            routes: aggregate::Routes::default(),
            authority,
            upstreams,
            sessions: Sessions::new(100_000, 3600),
            origins,
            max_body: config.server.max_body_bytes,
        })
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url
        .get(after..)
        .and_then(|r| r.find('/'))
        .map_or(url.len(), |i| after + i);
    url.get(..end).unwrap_or(url).to_owned()
}

/// The MCP routes (and the idle-session sweeper).
pub fn router(state: Arc<McpState>) -> Router {
    let sweeper = Arc::clone(&state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            sweeper.sessions.sweep(unix_now());
        }
    });
    routes(state)
}

/// The MCP routes of an agent-bound local listener: every request acts as `binding`.
pub fn local_router(state: Arc<McpState>, binding: Arc<local::LocalBinding>) -> Router {
    routes(state).layer(axum::Extension(binding))
}

fn routes(state: Arc<McpState>) -> Router {
    Router::new()
        .route(
            "/mcp",
            post(aggregate::post)
                .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                .delete(aggregate::end),
        )
        .route(
            "/mcp/{server}",
            post(post_message)
                .get(relay::open_stream)
                .delete(relay::end_session),
        )
        .with_state(state)
}

/// A JSON-RPC error answer.
pub(crate) fn rpc_error(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Value,
) -> Response {
    let reason = data
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut r = (status, axum::Json(error_response(id, code, message, data))).into_response();
    if let Some(reason) = reason {
        r.extensions_mut().insert(trail::RefusedReason(reason));
    }
    r
}

pub(crate) fn header_str<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Does the client speak a stateless version (2026-07-28 and later)?
fn is_stateless(h: &HeaderMap) -> bool {
    header_str(h, "mcp-protocol-version").is_some_and(|v| v >= "2026-07-28")
}

/// Step 1: a browser `Origin` must be allowed.
fn check_origin(
    s: &McpState,
    local: Option<&LocalBinding>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let allowed = |o: &str| {
        s.origins.iter().any(|a| a == o) || local.is_some_and(|l| l.origins.iter().any(|a| a == o))
    };
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(o) if o.to_str().is_ok_and(allowed) => Ok(()),
        Some(_) => Err(rpc_error(
            StatusCode::FORBIDDEN,
            None,
            codes::INVALID_REQUEST,
            "this Origin may not call Warden's MCP endpoints (set server.allowed_origins)",
            json!({"reason": "origin_not_allowed"}),
        )),
    }
}

fn unknown_upstream(server: &str) -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        None,
        codes::INVALID_REQUEST,
        &format!("no upstream named `{server}` is configured"),
        json!({"reason": "unknown_upstream"}),
    )
}

/// Step 1, the upstream, and step 2.
fn admit<'s>(
    s: &'s McpState,
    local: Option<&LocalBinding>,
    server: &str,
    method: &'static str,
    headers: &HeaderMap,
) -> Result<(&'s Upstream, Arc<AccessClaims>), Response> {
    check_origin(s, local, headers)?;
    let up = s
        .upstreams
        .get(server)
        .ok_or_else(|| unknown_upstream(server))?;
    Ok((
        up,
        authenticate(s, local, &up.resource, &up.name, method, headers)?,
    ))
}

/// Verifies the task token for `resource` (`label` names it in the log). On a local
/// listener the bound agent stands in for the token; its revocation state still applies.
fn authenticate(
    s: &McpState,
    local: Option<&LocalBinding>,
    resource: &str,
    label: &str,
    method: &'static str,
    headers: &HeaderMap,
) -> Result<Arc<AccessClaims>, Response> {
    let a = &s.authority;
    if let Some(l) = local {
        return match a.verifier.check_revocation(&l.claims) {
            Ok(()) => Ok(a.verifier.revocations().effective(Arc::clone(&l.claims))),
            Err(e) => {
                tracing::info!(upstream = %label, via = %l.via, "MCP request refused: {e}");
                Err(rpc_error(
                    StatusCode::FORBIDDEN,
                    None,
                    codes::DENIED,
                    &format!("{}: {e}", l.via),
                    json!({"reason": "agent_blocked"}),
                ))
            }
        };
    }
    oauth::credentials(headers)
        .and_then(|(token, proof)| {
            a.verifier.verify(
                Presentation {
                    token,
                    proof,
                    method,
                    url: resource,
                },
                resource,
                unix_now(),
            )
        })
        .map_err(|e| {
            tracing::info!(upstream = %label, "MCP request refused: {e}");
            let mut r = oauth::unauthorized(a, resource, &e);
            r.extensions_mut()
                .insert(trail::RefusedReason(e.code().to_owned()));
            r
        })
}

/// Step 5: a named session must be this agent's, on this upstream.
fn check_session(
    s: &McpState,
    scope: &str,
    claims: &AccessClaims,
    headers: &HeaderMap,
    id: Option<&RequestId>,
) -> Result<(), Response> {
    let Some(sid) = headers.get("mcp-session-id") else {
        return Ok(());
    };
    let known = sid
        .to_str()
        .ok()
        .map(|sid| s.sessions.check(sid, &claims.client_id, scope, unix_now()));
    match known {
        Some(Ok(())) => Ok(()),
        other => {
            if matches!(other, Some(Err(session::SessionRefusal::NotYours))) {
                tracing::warn!(agent = %claims.client_id, upstream = %scope,
                    "a session id of another agent or upstream was presented");
            }
            Err(rpc_error(
                StatusCode::NOT_FOUND,
                id,
                codes::INVALID_REQUEST,
                "unknown session: start a new one with `initialize`",
                json!({"reason": "unknown_session"}),
            ))
        }
    }
}

/// Step 4: the standard headers of 2026-07-28 must agree with the body.
pub(crate) fn check_headers(headers: &HeaderMap, frame: &Frame) -> Result<(), Response> {
    let (method, name) = match frame.message() {
        Message::Request { method, action, .. } => {
            // `Mcp-Name` belongs to these three methods only.
            let name = match action {
                warden_mcp::Action::CallTool { name, .. }
                | warden_mcp::Action::GetPrompt { name, .. } => Some(name.as_str()),
                warden_mcp::Action::ReadResource { uri } if method == "resources/read" => {
                    Some(uri.as_str())
                }
                _ => None,
            };
            (Some(method.as_str()), name)
        }
        Message::Notification { method } => (Some(method.as_str()), None),
        Message::Response { .. } => (None, None),
    };
    let stateless = is_stateless(headers);
    let refuse = |what: String| {
        Err(rpc_error(
            StatusCode::BAD_REQUEST,
            frame.id(),
            codes::INVALID_REQUEST,
            &what,
            json!({"reason": "header_mismatch"}),
        ))
    };
    let sent_method = header_str(headers, "mcp-method");
    match (sent_method, method) {
        (Some(h), Some(m)) if h != m => {
            return refuse(format!(
                "Mcp-Method `{h}` does not match the body's method `{m}`"
            ));
        }
        (None, Some(m)) if stateless => {
            return refuse(format!(
                "Mcp-Method is required from 2026-07-28 (body: `{m}`)"
            ));
        }
        // A response has no method: a proxy routing on the header must not see one
        // (found by the `mcp_headers` fuzz target).
        (Some(h), None) => {
            return refuse(format!("Mcp-Method `{h}` given for a response"));
        }
        _ => {}
    }
    match (header_str(headers, "mcp-name"), name) {
        (Some(h), Some(n)) if h != n => {
            refuse(format!("Mcp-Name `{h}` does not match the body's `{n}`"))
        }
        (Some(h), None) => refuse(format!("Mcp-Name `{h}` given for a message without a name")),
        (None, Some(n)) if stateless => refuse(format!(
            "Mcp-Name is required from 2026-07-28 (body: `{n}`)"
        )),
        _ => Ok(()),
    }
}

/// The agent's stated reason: `_meta["warden/reason"]`, else the `Warden-Reason` header.
fn stated_reason<'a>(frame: &'a Frame, headers: &'a HeaderMap) -> Option<&'a str> {
    frame
        .stated_reason()
        .or_else(|| header_str(headers, REASON_HEADER))
}

/// A refusal answered before the request's body was read (or read whole): it says
/// `Connection: close` and the connection ends with it. Otherwise the server would close it
/// anyway when the unread rest is not already buffered, and a pooled client, told nothing,
/// would send its next request on a dead connection.
pub(super) fn unread_body(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Step 3: the body, within the size limit, as one strict JSON-RPC message.
async fn read_frame(
    s: &McpState,
    claims: &AccessClaims,
    scope: &str,
    body: Body,
) -> Result<Frame, Response> {
    let Ok(bytes) = to_bytes(body, s.max_body).await else {
        return Err(unread_body(rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            codes::INVALID_REQUEST,
            &format!("the message exceeds {} bytes", s.max_body),
            json!({"reason": "frame_too_large"}),
        )));
    };
    Frame::parse(&bytes, s.max_body).map_err(|e| {
        tracing::info!(agent = %claims.client_id, upstream = %scope, "malformed MCP message: {e}");
        rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            e.code(),
            &e.to_string(),
            json!({"reason": e.reason_id()}),
        )
    })
}

/// `POST /mcp/{server}`: one JSON-RPC message from the agent; always ends with exactly one
/// decision record (see `trail`).
pub async fn post_message(
    State(s): State<Arc<McpState>>,
    Path(server): Path<String>,
    local: Option<Extension<Arc<LocalBinding>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    progress::serve(progress::accepts_sse(&headers), async move {
        let local = local.as_deref().map(Arc::as_ref);
        let mut trail = Trail::new(&s, &server, local);
        let r = post_inner(&s, &mut trail, local, &server, &headers, body).await;
        trail.finish(&s, &r);
        r
    })
    .await
}

async fn post_inner(
    s: &Arc<McpState>,
    trail: &mut Trail<'_>,
    local: Option<&LocalBinding>,
    server: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let (s, headers) = (s.as_ref(), headers);
    let (up, claims) = match admit(s, local, server, "POST", headers) {
        Ok(x) => x,
        Err(r) => return unread_body(r),
    };
    trail.authenticated(&claims);
    let frame = match read_frame(s, &claims, &up.name, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Message::Request { method, .. } | Message::Notification { method } = frame.message() {
        trail.method(method);
    }
    progress::offer(frame.meta("progressToken"));
    if let Err(r) = check_headers(headers, &frame) {
        return r;
    }
    if let Err(r) = check_session(s, &up.name, &claims, headers, frame.id()) {
        return r;
    }
    let reason = stated_reason(&frame, headers).map(str::to_owned);
    let approval = frame.approval_id().map(str::to_owned);
    let caller = Caller {
        claims: &claims,
        upstream: &up.name,
        reason: reason.as_deref(),
        now: unix_now(),
        local,
        approval: approval.as_deref(),
        limit_used: 0,
        risk: 0,
    };
    let snapshot = s.authority.engine.snapshot();
    let mut decided: Option<(u64, String, warden_core::ActionKind)> = None;
    let (decision, list, initialize) = match frame.message() {
        Message::Notification { method } => (
            warden_core::Decision::protocol_allow(format!("notification {method}")),
            None,
            false,
        ),
        Message::Response { .. } => (
            warden_core::Decision::protocol_allow("answer to an upstream request"),
            None,
            false,
        ),
        Message::Request { method, action, .. } => match decide::mediation(action) {
            Mediation::Decide {
                kind,
                name,
                arguments,
            } => match trail::decide_and_record(
                s,
                trail,
                &snapshot,
                &caller,
                kind,
                name,
                arguments,
                frame.id(),
            )
            .await
            {
                Ok((d, seq)) => {
                    decided = Some((seq, name.to_owned(), kind));
                    (d, None, false)
                }
                Err(Ok(refusal)) => {
                    return refuse(&frame, &format!("{}/{name}", up.name), &refusal);
                }
                Err(Err(unavailable)) => return unavailable,
            },
            Mediation::List(kind) => (
                warden_core::Decision::protocol_allow(format!("{method}: answer filtered")),
                Some(kind),
                false,
            ),
            Mediation::Protocol => (
                warden_core::Decision::protocol_allow(format!("protocol method {method}")),
                None,
                method == "initialize",
            ),
            Mediation::NotMediated => {
                return rpc_error(
                    StatusCode::OK,
                    frame.id(),
                    codes::METHOD_NOT_FOUND,
                    &format!("`{method}` is not mediated by Warden and is not forwarded"),
                    json!({"reason": "not_mediated"}),
                );
            }
        },
    };
    let Ok(permitted) = Permitted::new(frame, decision) else {
        // Unreachable: every decision above is an allow. Fail closed anyway.
        return rpc_error(
            StatusCode::OK,
            None,
            codes::DENIED,
            "denied",
            json!({"reason": "policy_denied"}),
        );
    };
    let forwarded = std::time::Instant::now();
    let id = permitted.frame().id().cloned();
    let on_abort = decided
        .as_ref()
        .map(|(seq, name, _)| trail::on_abort(s, &caller, *seq, name));
    // IO-1..IO-3: the answer to a decided call is inspected before the agent sees it.
    let gate = decided.as_ref().and_then(|(seq, name, kind)| {
        ResultGate::new(
            &s.authority.inspection,
            &claims,
            *kind,
            &up.name,
            name,
            *seq,
        )
    });
    let answer = contain::call(s, &claims, id.as_ref(), on_abort, async {
        match &up.link {
            UpstreamLink::Http(http) => {
                relay::forward(
                    s, up, http, &claims, &caller, headers, permitted, list, initialize, gate,
                )
                .await
            }
            UpstreamLink::Stdio(child) => {
                stdio_front::forward(
                    s, up, child, &claims, &caller, headers, permitted, list, gate,
                )
                .await
            }
        }
    })
    .await;
    if let Some((seq, name, _)) = decided {
        trail::outcome(s, trail, &caller, seq, &name, forwarded, &answer);
    }
    answer
}

fn refuse(frame: &Frame, resource: &str, r: &Refusal) -> Response {
    rpc_error(
        StatusCode::OK,
        frame.id(),
        r.code,
        &r.message,
        r.data(resource),
    )
}

fn log_decision(
    c: &Caller<'_>,
    action: &str,
    name: &str,
    d: &warden_core::Decision,
    refusal: Option<&Refusal>,
) {
    tracing::info!(
        target: "warden::decision",
        agent = %c.claims.client_id,
        sub = %c.claims.sub,
        task = c.claims.task().map_or("", |t| t.task_id.as_str()),
        action,
        resource = %format_args!("{}/{name}", c.upstream),
        effect = d.effect.as_str(),
        reason_id = refusal.map_or("allowed", |r| r.reason_id),
        policies = ?d.determining,
        stated_reason = c.reason.unwrap_or(""),
        via = c.via(),
        "decision"
    );
}
