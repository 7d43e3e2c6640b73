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
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use warden_core::{AgentRecord, AutonomyLevel};
use warden_identity::ServerKeys;
use warden_identity::assertion::AssertionPolicy;
use warden_identity::replay::ReplayCache;
use warden_identity::token::{
    AccessClaims, Confirmation, TASK_DETAIL_TYPE, TaskDetail, sign_access_token,
};
use warden_identity::verifier::TokenVerifier;
use warden_policy::Engine;
use warden_store::{SqliteStore, StoreError};

use crate::unix_now;

mod grants;
mod resource;

pub use resource::{credentials, unauthorized, whoami};

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
    /// The audit trail every decision is written to.
    pub audit: Arc<crate::audit::Audit>,
    /// Calls held for a human's approval.
    pub approvals: Arc<crate::approvals::Approvals>,
    /// Rate limits and blast-radius caps.
    pub limits: crate::limits::Limits,
    /// Circuit breakers and automatic demotion.
    pub breakers: Arc<crate::breakers::Breakers>,
    /// Content inspection, taints and tool pins.
    pub inspection: Arc<crate::inspection::Inspection>,
    /// Behavioural baselines, risk and quarantine.
    pub monitoring: Arc<crate::monitoring::Monitoring>,
}

/// An RFC 6749 §5.2 error.
#[derive(Debug, Clone)]
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
pub(crate) struct Form(HashMap<String, String>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, OauthError> {
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

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
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

    /// A root task token for `agent`: the agent is the principal, nothing delegated, the
    /// lifetime of its autonomy level, bound to `jkt` when given. Each grant then sets what
    /// differs (`sub`, `act`, `exp`, `depth`, `parents`).
    fn mint(
        &self,
        agent: &AgentRecord,
        aud: String,
        task: TaskDetail,
        jkt: Option<String>,
        now: i64,
    ) -> AccessClaims {
        AccessClaims {
            iss: self.issuer.clone(),
            sub: agent.id.to_string(),
            aud,
            exp: now + self.lifetime(agent.autonomy),
            iat: now,
            jti: Self::new_jti(),
            client_id: agent.id.to_string(),
            authorization_details: vec![task],
            act: None,
            cnf: jkt.map(|jkt| Confirmation { jkt }),
            autonomy: agent.autonomy,
            sponsor: agent.sponsors.clone(),
            depth: 0,
            parents: Vec::new(),
        }
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
        // After a kill and a resume, within the kill's second: issued just after it, or the
        // fresh token would count as one the kill revoked (`iat <= kill`). At most a second
        // ahead of the clock, well inside the verifier's skew.
        let bumped;
        let claims = match self.verifier.revocations().latest_kill(claims) {
            Some(at) if claims.iat <= at => {
                bumped = AccessClaims {
                    iat: at.saturating_add(1),
                    ..claims.clone()
                };
                &bumped
            }
            _ => claims,
        };
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
    let started = std::time::Instant::now();
    let form = Form::parse(&bytes);
    let result = async {
        let form = form.as_ref().map_err(Clone::clone)?;
        match form.require("grant_type")? {
            CLIENT_CREDENTIALS => a.client_credentials(form, &parts.headers, now).await,
            TOKEN_EXCHANGE => a.token_exchange(form, &parts.headers, now).await,
            other => Err(OauthError::new(
                "unsupported_grant_type",
                format!("grant_type `{other}`; Warden supports {CLIENT_CREDENTIALS} and {TOKEN_EXCHANGE}"),
            )),
        }
    }
    .await;
    // One record per token request: issued (the agent proved who it is) or refused (the
    // client id is only what the request claimed, so it goes in the reasons).
    let claimed = form.as_ref().ok().and_then(|f| {
        f.get("client_id").map(str::to_owned).or_else(|| {
            // The assertion's subject: verified when the token was issued, only claimed
            // when it was not.
            let payload = f.get("client_assertion")?.split('.').nth(1)?;
            let bytes =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                    .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            v.get("sub")?.as_str().map(str::to_owned)
        })
    });
    let mut r = crate::audit::from_claims(None, "token", "private_key_jwt");
    r.action = "issue_token".into();
    r.resource = form
        .as_ref()
        .ok()
        .and_then(|f| f.get("resource"))
        .unwrap_or(&a.issuer)
        .to_owned();
    r.policy_version = a.engine.snapshot().version().to_owned();
    r.latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match &result {
        Ok(_) => {
            r.agent = claimed;
            r.decision = "allow".into();
            r.reason_id = "issued".into();
        }
        Err(e) => {
            r.decision = "deny".into();
            r.reason_id = e.code.to_owned();
            r.reasons.push(e.description.clone());
            if let Some(c) = claimed {
                r.reasons.push(format!("client_id claimed: {c}"));
            }
        }
    }
    a.audit.record(r);
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
