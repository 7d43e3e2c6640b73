//! Warden as the OAuth 2.1 authorization server for agents (the PA's endpoints).
//!
//! - `POST /oauth/token`: `client_credentials` with `private_key_jwt` (RFC 7523), and token
//!   exchange (RFC 8693) for delegation and on-behalf-of. `resource` (RFC 8707) becomes
//!   `aud`; `authorization_details` (RFC 9396, type `warden_task`) names the task and the
//!   actions it needs; the PE is asked about each action and only the grantable ones go in
//!   the token. DPoP (RFC 9449) binds the token to the client's key.
//! - `GET /.well-known/oauth-authorization-server` (RFC 8414) and
//!   `/.well-known/oauth-protected-resource/mcp[/<server>]` (RFC 9728).
//! - `GET /oauth/whoami?resource=...`: a protected diagnostic resource that runs the same
//!   check as every MCP request and shows what the token says.
//!
//! Every refusal is RFC 6749 error JSON with a 400 or 401; storage trouble is a 503
//! `temporarily_unavailable`. Nothing here answers 500.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::to_bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use warden_core::{ActionKind, AgentId, AgentRecord, AgentState, AutonomyLevel};
use warden_identity::assertion::{self, AssertionPolicy, JWT_BEARER};
use warden_identity::dpop::{self, DpopError};
use warden_identity::replay::ReplayCache;
use warden_identity::token::{
    AccessClaims, Actor, Confirmation, GrantedAction, TASK_DETAIL_TYPE, TaskDetail,
    sign_access_token,
};
use warden_identity::verifier::{AuthError, Presentation, TokenVerifier};
use warden_identity::{ServerKeys, jws};
use warden_policy::{ActionRequest, Engine, TaskInfo};
use warden_store::{AgentStore, SqliteStore, StoreError};

use crate::unix_now;

pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A company IdP whose user tokens start on-behalf-of exchanges.
#[derive(Debug, Clone)]
pub struct Idp {
    pub issuer: String,
    pub audience: String,
    pub keys: Vec<(String, ed25519_dalek::VerifyingKey)>,
}

impl Idp {
    /// Reads the IdP's JWKS file (Ed25519 `OKP` keys; others are skipped with a warning).
    pub fn load(cfg: &warden_config::IdentityProvider) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(&cfg.jwks_file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.jwks_file.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", cfg.jwks_file.display()))?;
        let mut keys = Vec::new();
        for k in doc
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |f: &str| k.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
            let jwk = warden_core::PublicJwk {
                kty: s("kty"),
                crv: s("crv"),
                x: s("x"),
                kid: s("kid"),
            };
            match warden_identity::verifying_key(&jwk) {
                Ok(vk) => keys.push((jwk.kid, vk)),
                Err(e) => tracing::warn!(idp = %cfg.issuer, kid = %jwk.kid, "IdP key skipped: {e}"),
            }
        }
        if keys.is_empty() {
            anyhow::bail!(
                "{}: no usable Ed25519 key for IdP {}",
                cfg.jwks_file.display(),
                cfg.issuer
            );
        }
        Ok(Self {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            keys,
        })
    }
}

/// Everything the token endpoint needs.
#[derive(Debug)]
pub struct Authority {
    pub store: SqliteStore,
    pub engine: Arc<Engine>,
    pub keys: Arc<ServerKeys>,
    pub verifier: Arc<TokenVerifier>,
    pub issuer: String,
    /// The resources tokens may be issued for: `<issuer>/mcp` and `<issuer>/mcp/<name>`,
    /// with their display names.
    pub resources: Vec<(String, Option<String>)>,
    pub assertion_replay: ReplayCache,
    pub assertion_policy: AssertionPolicy,
    pub lifetimes: warden_config::TokenLifetimes,
    pub max_depth: u32,
    pub idps: Vec<Idp>,
    pub max_body: usize,
}

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OauthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OauthError {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        let status = match code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            status,
            code,
            description: description.into(),
        }
    }
}

impl IntoResponse for OauthError {
    fn into_response(self) -> Response {
        tracing::info!(error = self.code, description = %self.description, "token request refused");
        let mut r = (
            self.status,
            axum::Json(json!({"error": self.code, "error_description": self.description})),
        )
            .into_response();
        no_store(r.headers_mut());
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("DPoP algs=\"EdDSA\""),
            );
        }
        r
    }
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn store_error(e: StoreError) -> OauthError {
    match e {
        StoreError::UnknownAgent(a) => {
            OauthError::new("invalid_client", format!("unknown agent `{a}`"))
        }
        other => {
            tracing::error!("store error on the token endpoint: {other}");
            OauthError::new(
                "temporarily_unavailable",
                "Warden's store is not available; try again",
            )
        }
    }
}

/// The form parameters, each at most once (RFC 6749 §3.2).
#[derive(Debug, Default)]
struct Form(HashMap<String, String>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self, OauthError> {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(OauthError::new(
                    "invalid_request",
                    format!("parameter `{k}` is repeated"),
                ));
            }
        }
        Ok(Self(map))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn require(&self, k: &str) -> Result<&str, OauthError> {
        self.get(k)
            .ok_or_else(|| OauthError::new("invalid_request", format!("`{k}` is required")))
    }
}

impl Authority {
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.issuer)
    }

    fn lifetime(&self, a: AutonomyLevel) -> i64 {
        match a {
            AutonomyLevel::Intern => self.lifetimes.intern,
            AutonomyLevel::Junior => self.lifetimes.junior,
            AutonomyLevel::Senior => self.lifetimes.senior,
            AutonomyLevel::Principal => self.lifetimes.principal,
        }
    }

    fn known_resource(&self, r: &str) -> bool {
        self.resources.iter().any(|(u, _)| u == r)
    }

    /// Authenticates an agent by its signed assertion; it must be active.
    async fn authenticate(&self, assertion: &str, now: i64) -> Result<AgentRecord, OauthError> {
        let bad = |e: assertion::AssertionError| OauthError::new("invalid_client", e.to_string());
        let claimed = assertion::claimed_agent(assertion).map_err(bad)?;
        let id = AgentId::new(claimed.as_str())
            .map_err(|_| OauthError::new("invalid_client", format!("unknown agent `{claimed}`")))?;
        let agent = self.store.agent(&id).await.map_err(store_error)?;
        let endpoint = self.token_endpoint();
        assertion::verify_assertion(
            assertion,
            &agent,
            &[endpoint.as_str(), self.issuer.as_str()],
            self.assertion_policy,
            &self.assertion_replay,
            now,
        )
        .map_err(|e| match e {
            assertion::AssertionError::CacheFull => {
                OauthError::new("temporarily_unavailable", e.to_string())
            }
            e => bad(e),
        })?;
        if agent.state != AgentState::Active {
            return Err(OauthError::new(
                "invalid_client",
                format!("agent `{}` is {}", agent.id, agent.state.as_str()),
            ));
        }
        Ok(agent)
    }

    /// The DPoP key of the token request, if a proof came; required unless the agent
    /// opted out.
    fn dpop_key(
        &self,
        headers: &HeaderMap,
        agent: &AgentRecord,
        now: i64,
    ) -> Result<Option<String>, OauthError> {
        let proof = match headers
            .get_all("dpop")
            .iter()
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => None,
            [one] => Some(one.to_str().map_err(|_| {
                OauthError::new("invalid_dpop_proof", "the DPoP header is not ASCII")
            })?),
            _ => {
                return Err(OauthError::new(
                    "invalid_dpop_proof",
                    "exactly one DPoP header is allowed",
                ));
            }
        };
        let Some(proof) = proof else {
            if agent.dpop_required {
                return Err(OauthError::new(
                    "invalid_dpop_proof",
                    format!(
                        "agent `{}` must send a DPoP proof with its token requests",
                        agent.id
                    ),
                ));
            }
            return Ok(None);
        };
        let v = dpop::verify_proof(
            proof,
            "POST",
            &self.token_endpoint(),
            None,
            None,
            self.verifier.dpop_policy(),
            self.verifier.replay_cache(),
            now,
        )
        .map_err(|e| match e {
            DpopError::CacheFull => OauthError::new("temporarily_unavailable", e.to_string()),
            e => OauthError::new("invalid_dpop_proof", e.to_string()),
        })?;
        Ok(Some(v.jkt))
    }

    /// The single `warden_task` entry of `authorization_details`, if given.
    fn task_detail(form: &Form) -> Result<Option<TaskDetail>, OauthError> {
        let bad = |m: String| OauthError::new("invalid_authorization_details", m);
        let Some(raw) = form.get("authorization_details") else {
            return Ok(None);
        };
        let list: Vec<Value> = serde_json::from_str(raw)
            .map_err(|e| bad(format!("authorization_details is not a JSON array: {e}")))?;
        let [only] = list.as_slice() else {
            return Err(bad(format!(
                "exactly one authorization_details entry of type `{TASK_DETAIL_TYPE}` is \
                 expected, got {}",
                list.len()
            )));
        };
        if only.get("type").and_then(Value::as_str) != Some(TASK_DETAIL_TYPE) {
            return Err(bad(format!(
                "unsupported authorization_details type; Warden knows `{TASK_DETAIL_TYPE}`"
            )));
        }
        let d: TaskDetail = serde_json::from_value(only.clone())
            .map_err(|e| bad(format!("{TASK_DETAIL_TYPE}: {e}")))?;
        if d.task_id.is_empty()
            || d.task_id.len() > 128
            || !d
                .task_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(bad(
                "task_id must be 1-128 letters, digits, `-`, `_`, `.` or `:`".into(),
            ));
        }
        Ok(Some(d))
    }

    /// Keeps the requested actions the PE could permit for `agent` on this task; says why
    /// the others were refused.
    #[allow(clippy::too_many_arguments)]
    fn intersect(
        &self,
        agent: &AgentRecord,
        aud: &str,
        task: &TaskDetail,
        on_behalf_of: Option<&str>,
        delegated_by: &[&str],
        requested: &[GrantedAction],
        now: i64,
    ) -> Result<(Vec<GrantedAction>, Vec<Value>), OauthError> {
        let snapshot = self.engine.snapshot();
        let server = aud
            .strip_prefix(&self.issuer)
            .and_then(|p| p.strip_prefix("/mcp/"));
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        let delegated_by = delegated_by
            .iter()
            .map(|a| AgentId::new(*a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OauthError::new("invalid_grant", e.to_string()))?;
        for want in requested {
            let server_scoped = want.action != ActionKind::SendMessage;
            let outside = match server {
                Some(s) => {
                    !server_scoped
                        || !want
                            .resource
                            .strip_prefix(s)
                            .is_some_and(|r| r.starts_with('/'))
                }
                None => false,
            };
            if outside {
                refused.push(json!({"action": want.action, "resource": want.resource,
                    "reason": format!("not served by resource {aud}")}));
                continue;
            }
            let req = ActionRequest {
                agent: agent.id.clone(),
                action: want.action,
                resource: want.resource.clone(),
                arguments: serde_json::Map::new(),
                task: TaskInfo {
                    id: task.task_id.clone(),
                    purpose: task.purpose.clone(),
                },
                on_behalf_of: on_behalf_of.map(str::to_owned),
                delegated_by: delegated_by.clone(),
                autonomy: agent.autonomy,
                risk: warden_core::RiskScore::default(),
                time: now,
                reason: None,
            };
            match snapshot.grantable(&req) {
                warden_policy::Grantability::Grantable { .. } => granted.push(want.clone()),
                warden_policy::Grantability::Refused(why) => refused
                    .push(json!({"action": want.action, "resource": want.resource, "reason": why})),
            }
        }
        granted.sort();
        granted.dedup();
        if granted.is_empty() {
            let reasons: Vec<String> = refused
                .iter()
                .map(|r| {
                    format!(
                        "{} {}: {}",
                        r["action"].as_str().unwrap_or(""),
                        r["resource"].as_str().unwrap_or(""),
                        r["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            return Err(OauthError::new(
                "invalid_authorization_details",
                format!(
                    "no requested action can be granted to `{}` for this task: {}",
                    agent.id,
                    reasons.join("; ")
                ),
            ));
        }
        Ok((granted, refused))
    }

    fn new_jti() -> String {
        let mut b = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        B64.encode(b)
    }

    fn respond(
        &self,
        claims: &AccessClaims,
        refused: Vec<Value>,
        exchange: bool,
        now: i64,
    ) -> Result<Response, OauthError> {
        let token = sign_access_token(self.keys.current(), claims)
            .map_err(|e| OauthError::new("temporarily_unavailable", format!("cannot sign: {e}")))?;
        tracing::info!(
            agent = %claims.client_id, sub = %claims.sub, aud = %claims.aud, jti = %claims.jti,
            task = claims.task().map_or("", |t| t.task_id.as_str()),
            actions = claims.task().map_or(0, |t| t.actions.len()),
            depth = claims.depth, dpop = claims.cnf.is_some(),
            "task token issued"
        );
        let mut body = json!({
            "access_token": token,
            "token_type": if claims.cnf.is_some() { "DPoP" } else { "Bearer" },
            "expires_in": claims.exp - now,
            "authorization_details": claims.authorization_details,
        });
        if let Some(o) = body.as_object_mut() {
            if exchange {
                o.insert("issued_token_type".into(), json!(ACCESS_TOKEN_TYPE));
            }
            if !refused.is_empty() {
                o.insert("warden_refused".into(), Value::Array(refused));
            }
        }
        let mut r = (StatusCode::OK, axum::Json(body)).into_response();
        no_store(r.headers_mut());
        Ok(r)
    }

    async fn client_credentials(
        &self,
        form: &Form,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Response, OauthError> {
        let agent = self.client(form, now).await?;
        let jkt = self.dpop_key(headers, &agent, now)?;
        let aud = self.resource(form)?;
        let task = Self::task_detail(form)?.ok_or_else(|| {
            OauthError::new(
                "invalid_authorization_details",
                format!("authorization_details with one `{TASK_DETAIL_TYPE}` entry is required"),
            )
        })?;
        if task.on_behalf_of.is_some() {
            return Err(OauthError::new(
                "invalid_authorization_details",
                "on_behalf_of needs the user's own token: use token exchange with the user's \
                 IdP token as subject_token",
            ));
        }
        if task.actions.is_empty() {
            return Err(OauthError::new(
                "invalid_authorization_details",
                "the task names no actions",
            ));
        }
        let (granted, refused) =
            self.intersect(&agent, &aud, &task, None, &[], &task.actions, now)?;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: agent.id.to_string(),
            aud,
            exp: now + self.lifetime(agent.autonomy),
            iat: now,
            jti: Self::new_jti(),
            client_id: agent.id.to_string(),
            authorization_details: vec![TaskDetail {
                actions: granted,
                ..task
            }],
            act: None,
            cnf: jkt.map(|jkt| Confirmation { jkt }),
            autonomy: agent.autonomy,
            sponsor: agent.sponsors.clone(),
            depth: 0,
            parents: Vec::new(),
        };
        self.respond(&claims, refused, false, now)
    }

    async fn client(&self, form: &Form, now: i64) -> Result<AgentRecord, OauthError> {
        if form.get("client_secret").is_some() {
            return Err(OauthError::new(
                "invalid_client",
                "client secrets are not accepted; authenticate with private_key_jwt",
            ));
        }
        match form.get("client_assertion_type") {
            Some(JWT_BEARER) => {}
            Some(other) => {
                return Err(OauthError::new(
                    "invalid_client",
                    format!("client_assertion_type `{other}` is not supported; use {JWT_BEARER}"),
                ));
            }
            None => {
                return Err(OauthError::new(
                    "invalid_client",
                    "client authentication with private_key_jwt is required \
                     (client_assertion_type, client_assertion)",
                ));
            }
        }
        let agent = self
            .authenticate(form.require("client_assertion")?, now)
            .await?;
        if let Some(cid) = form.get("client_id")
            && cid != agent.id.as_str()
        {
            return Err(OauthError::new(
                "invalid_client",
                "client_id does not match the client assertion",
            ));
        }
        Ok(agent)
    }

    fn resource(&self, form: &Form) -> Result<String, OauthError> {
        let r = form.get("resource").ok_or_else(|| {
            OauthError::new(
                "invalid_target",
                format!(
                    "`resource` is required (RFC 8707): one of {}",
                    self.resource_list()
                ),
            )
        })?;
        if !self.known_resource(r) {
            return Err(OauthError::new(
                "invalid_target",
                format!(
                    "`{r}` is not a resource Warden fronts; one of {}",
                    self.resource_list()
                ),
            ));
        }
        Ok(r.to_owned())
    }

    fn resource_list(&self) -> String {
        self.resources
            .iter()
            .map(|(u, _)| u.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn token_exchange(
        &self,
        form: &Form,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Response, OauthError> {
        match form.get("actor_token_type") {
            Some(JWT_TOKEN_TYPE) => {}
            _ => {
                return Err(OauthError::new(
                    "invalid_request",
                    format!(
                        "actor_token (the acting agent's signed assertion) with \
                         actor_token_type {JWT_TOKEN_TYPE} is required"
                    ),
                ));
            }
        }
        let actor = self.authenticate(form.require("actor_token")?, now).await?;
        if form.get("client_assertion").is_some() {
            let client = self.client(form, now).await?;
            if client.id != actor.id {
                return Err(OauthError::new(
                    "invalid_client",
                    "the client and the actor must be the same agent",
                ));
            }
        }
        let jkt = self.dpop_key(headers, &actor, now)?;
        let subject = form.require("subject_token")?;
        match form.require("subject_token_type")? {
            ACCESS_TOKEN_TYPE => self.delegate(form, subject, &actor, jkt, now),
            JWT_TOKEN_TYPE | ID_TOKEN_TYPE => self.on_behalf_of(form, subject, &actor, jkt, now),
            other => Err(OauthError::new(
                "invalid_request",
                format!("subject_token_type `{other}` is not supported"),
            )),
        }
    }

    /// RFC 8693 delegation: the parent's task token, narrowed, for a child agent.
    fn delegate(
        &self,
        form: &Form,
        subject: &str,
        child: &AgentRecord,
        jkt: Option<String>,
        now: i64,
    ) -> Result<Response, OauthError> {
        let grant = |e: AuthError| OauthError::new("invalid_grant", format!("subject_token: {e}"));
        let parent = self.verifier.decode(subject, now).map_err(grant)?;
        self.verifier.check_revocation(&parent).map_err(grant)?;
        let depth = parent.depth + 1;
        if depth > self.max_depth {
            return Err(OauthError::new(
                "invalid_request",
                format!(
                    "delegation depth {depth} is over the limit of {}",
                    self.max_depth
                ),
            ));
        }
        if parent.client_id == child.id.as_str() {
            return Err(OauthError::new(
                "invalid_request",
                "an agent cannot delegate to itself",
            ));
        }
        if parent.agents().contains(&child.id.as_str()) {
            return Err(OauthError::new(
                "invalid_request",
                format!("agent `{}` is already in this delegation chain", child.id),
            ));
        }
        let aud = match form.get("resource") {
            None => parent.aud.clone(),
            Some(r) if r == parent.aud => r.to_owned(),
            Some(r) => {
                return Err(OauthError::new(
                    "invalid_target",
                    format!(
                        "a delegated token keeps its parent's audience {}; `{r}` would widen it",
                        parent.aud
                    ),
                ));
            }
        };
        let parent_task = parent
            .task()
            .cloned()
            .ok_or_else(|| OauthError::new("invalid_grant", "subject_token has no task"))?;
        let requested = match Self::task_detail(form)? {
            None => parent_task.actions.clone(),
            Some(d) => {
                if d.task_id != parent_task.task_id {
                    return Err(OauthError::new(
                        "invalid_authorization_details",
                        format!("a delegated token stays on task `{}`", parent_task.task_id),
                    ));
                }
                if d.on_behalf_of.is_some() {
                    return Err(OauthError::new(
                        "invalid_authorization_details",
                        "on_behalf_of is inherited from the subject token, not requested",
                    ));
                }
                if let Some(extra) = d.actions.iter().find(|a| !parent_task.actions.contains(a)) {
                    return Err(OauthError::new(
                        "invalid_authorization_details",
                        format!(
                            "delegation cannot widen the task: the parent token does not grant \
                             {} on {}",
                            extra.action.as_str(),
                            extra.resource
                        ),
                    ));
                }
                d.actions
            }
        };
        let obo = parent.on_behalf_of().map(str::to_owned);
        // The child acts for everyone already in the chain, root first.
        let mut chain: Vec<&str> = parent.delegated_by();
        chain.push(parent.client_id.as_str());
        let (granted, refused) = self.intersect(
            child,
            &aud,
            &parent_task,
            obo.as_deref(),
            &chain,
            &requested,
            now,
        )?;
        let mut parents = parent.parents.clone();
        parents.push(parent.jti.clone());
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: parent.sub.clone(),
            aud,
            exp: (now + self.lifetime(child.autonomy)).min(parent.exp),
            iat: now,
            jti: Self::new_jti(),
            client_id: child.id.to_string(),
            authorization_details: vec![TaskDetail {
                actions: granted,
                ..parent_task
            }],
            act: Some(Actor {
                sub: child.id.to_string(),
                act: parent.act.clone().map(Box::new),
            }),
            cnf: jkt.map(|jkt| Confirmation { jkt }),
            autonomy: child.autonomy,
            sponsor: child.sponsors.clone(),
            depth,
            parents,
        };
        self.respond(&claims, refused, true, now)
    }

    /// On-behalf-of: a user's IdP token and an agent's assertion give a task token with
    /// `sub` = the user and `act.sub` = the agent.
    fn on_behalf_of(
        &self,
        form: &Form,
        subject: &str,
        agent: &AgentRecord,
        jkt: Option<String>,
        now: i64,
    ) -> Result<Response, OauthError> {
        let user = self.verify_user_token(subject, now)?;
        let aud = self.resource(form)?;
        let task = Self::task_detail(form)?.ok_or_else(|| {
            OauthError::new(
                "invalid_authorization_details",
                "authorization_details with the task is required",
            )
        })?;
        if task.on_behalf_of.as_deref().is_some_and(|u| u != user) {
            return Err(OauthError::new(
                "invalid_authorization_details",
                "on_behalf_of differs from the user in subject_token",
            ));
        }
        let (granted, refused) =
            self.intersect(agent, &aud, &task, Some(&user), &[], &task.actions, now)?;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: user.clone(),
            aud,
            exp: now + self.lifetime(agent.autonomy),
            iat: now,
            jti: Self::new_jti(),
            client_id: agent.id.to_string(),
            authorization_details: vec![TaskDetail {
                actions: granted,
                on_behalf_of: Some(user),
                ..task
            }],
            act: Some(Actor {
                sub: agent.id.to_string(),
                act: None,
            }),
            cnf: jkt.map(|jkt| Confirmation { jkt }),
            autonomy: agent.autonomy,
            sponsor: agent.sponsors.clone(),
            depth: 0,
            parents: Vec::new(),
        };
        self.respond(&claims, refused, true, now)
    }

    /// Verifies a user token from a configured IdP; returns the user (`sub`).
    fn verify_user_token(&self, token: &str, now: i64) -> Result<String, OauthError> {
        let bad = |m: String| OauthError::new("invalid_grant", format!("subject_token: {m}"));
        let peek = jws::peek(token).map_err(|e| bad(e.to_string()))?;
        let iss = peek.claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let idp = self.idps.iter().find(|i| i.issuer == iss).ok_or_else(|| {
            bad(format!(
                "issuer `{iss}` is not a configured identity provider"
            ))
        })?;
        let kid = peek.header.get("kid").and_then(Value::as_str);
        let mut verified = None;
        for (_, key) in idp
            .keys
            .iter()
            .filter(|(k, _)| kid.is_none_or(|kid| kid == k))
        {
            if let Ok(v) = jws::verify(token, key, None) {
                verified = Some(v);
                break;
            }
        }
        let claims = verified
            .ok_or_else(|| bad("not signed by the identity provider".into()))?
            .claims;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == idp.audience,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&idp.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(bad(format!("aud must include `{}`", idp.audience)));
        }
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp <= now {
            return Err(bad("expired".into()));
        }
        let skew = self.assertion_policy.skew;
        if claims
            .get("nbf")
            .and_then(Value::as_i64)
            .is_some_and(|n| n > now + skew)
        {
            return Err(bad("not valid yet".into()));
        }
        claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| bad("no sub".into()))
    }
}

/// `POST /oauth/token`.
pub async fn token(State(a): State<Arc<Authority>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return OauthError::new(
            "invalid_request",
            "the token request must be application/x-www-form-urlencoded",
        )
        .into_response();
    }
    let Ok(bytes) = to_bytes(body, a.max_body).await else {
        return OauthError::new(
            "invalid_request",
            "the request body is too large or unreadable",
        )
        .into_response();
    };
    let now = unix_now();
    let result = async {
        let form = Form::parse(&bytes)?;
        match form.require("grant_type")? {
            CLIENT_CREDENTIALS => a.client_credentials(&form, &parts.headers, now).await,
            TOKEN_EXCHANGE => a.token_exchange(&form, &parts.headers, now).await,
            other => Err(OauthError::new(
                "unsupported_grant_type",
                format!("grant_type `{other}`; Warden supports {CLIENT_CREDENTIALS} and {TOKEN_EXCHANGE}"),
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Anything but POST on `/oauth/token`.
pub async fn token_method_not_allowed() -> Response {
    let mut r = OauthError::new("invalid_request", "the token endpoint takes POST").into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

/// RFC 8414 metadata.
pub async fn metadata(State(a): State<Arc<Authority>>) -> Response {
    let i = &a.issuer;
    axum::Json(json!({
        "issuer": i,
        "token_endpoint": a.token_endpoint(),
        "jwks_uri": format!("{i}/.well-known/jwks.json"),
        "grant_types_supported": [CLIENT_CREDENTIALS, TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "authorization_details_types_supported": [TASK_DETAIL_TYPE],
        "response_types_supported": [],
        "protected_resources": a.resources.iter().map(|(u, _)| u).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// RFC 9728 metadata for `/mcp` and each `/mcp/<server>`.
pub async fn resource_metadata(State(a): State<Arc<Authority>>, req: Request) -> Response {
    let path = req.uri().path();
    let suffix = path
        .strip_prefix("/.well-known/oauth-protected-resource")
        .unwrap_or("");
    let resource = format!("{}{suffix}", a.issuer);
    let Some((_, name)) = a.resources.iter().find(|(u, _)| *u == resource) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not_found",
                "error_description": format!("Warden fronts no resource {resource}")})),
        )
            .into_response();
    };
    let mut doc = json!({
        "resource": resource,
        "authorization_servers": [a.issuer],
        "jwks_uri": format!("{}/.well-known/jwks.json", a.issuer),
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "dpop_bound_access_tokens_required": true,
        "authorization_details_types_supported": [TASK_DETAIL_TYPE],
    });
    if let (Some(n), Some(o)) = (name, doc.as_object_mut()) {
        o.insert("resource_name".into(), json!(n));
    }
    axum::Json(doc).into_response()
}

/// Reads `Authorization: DPoP <token>` (or `Bearer`) and the `DPoP` header.
pub fn credentials(headers: &HeaderMap) -> Result<(&str, Option<&str>), AuthError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let token = auth
        .strip_prefix("DPoP ")
        .or_else(|| auth.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)?;
    let mut proofs = headers.get_all("dpop").iter();
    let proof = proofs.next().and_then(|v| v.to_str().ok());
    if proofs.next().is_some() {
        return Err(AuthError::Dpop(DpopError::Missing("a single DPoP header")));
    }
    Ok((token, proof))
}

/// A 401 with `WWW-Authenticate` naming the error and the resource metadata (RFC 9728 §5.1).
pub fn unauthorized(a: &Authority, resource: &str, e: &AuthError) -> Response {
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource{}",
        a.issuer,
        resource.strip_prefix(&a.issuer).unwrap_or("")
    );
    let desc = e.to_string().replace('"', "'");
    let challenge = format!(
        "DPoP algs=\"EdDSA\", error=\"{}\", error_description=\"{desc}\", resource_metadata=\"{metadata}\"",
        e.code()
    );
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": e.code(), "error_description": e.to_string()})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `GET /oauth/whoami?resource=<url>`: the resource-server check of every MCP request, on
/// a resource that answers with what the token says.
pub async fn whoami(
    State(a): State<Arc<Authority>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(resource) = q.get("resource").filter(|r| a.known_resource(r)) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request",
                "error_description": format!("?resource= must be one of {}", a.resource_list())})),
        )
            .into_response();
    };
    let now = unix_now();
    let url = format!(
        "{}/oauth/whoami?resource={}",
        a.issuer,
        form_urlencoded::byte_serialize(resource.as_bytes()).collect::<String>()
    );
    let verified = credentials(&headers).and_then(|(token, proof)| {
        a.verifier.verify(
            Presentation {
                token,
                proof,
                method: "GET",
                url: &url,
            },
            resource,
            now,
        )
    });
    match verified {
        Ok(c) => axum::Json(json!({
            "agent": c.client_id,
            "sub": c.sub,
            "on_behalf_of": c.on_behalf_of(),
            "delegated_by": c.delegated_by(),
            "task": c.task(),
            "aud": c.aud,
            "exp": c.exp,
            "jti": c.jti,
            "depth": c.depth,
            "autonomy": c.autonomy,
            "sponsor": c.sponsor,
            "dpop_bound": c.cnf.is_some(),
        }))
        .into_response(),
        Err(e) => {
            tracing::info!(resource = %resource, "request refused: {e}");
            unauthorized(&a, resource, &e)
        }
    }
}
