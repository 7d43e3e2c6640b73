//! A small blocking client for Warden, used by the CLI, the tests and the load driver.
//!
//! [`AgentClient`] is an agent: it authenticates with its own key (`private_key_jwt`), binds
//! tokens to a DPoP key, asks for task tokens, delegates to other agents by token exchange,
//! and calls protected resources with a fresh DPoP proof each time. [`AdminClient`] drives
//! the admin API with an admin credential.
//!
//! ```no_run
//! # fn main() -> Result<(), warden_client::ClientError> {
//! use warden_client::{AgentClient, TaskRequest};
//! let key = warden_identity::KeyPair::read_private("agent.jwk".as_ref()).unwrap();
//! let agent = AgentClient::new("http://127.0.0.1:8470", "crm-bot", key);
//! let task = TaskRequest::new("task-1", "answer a ticket").call_tool("crm/search");
//! let token = agent.token("http://127.0.0.1:8470/mcp/crm", &task)?;
//! println!("{}", token.access_token);
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warden_core::{ActionKind, AgentRecord, AutonomyLevel, PublicJwk};
use warden_identity::KeyPair;
use warden_identity::assertion::{JWT_BEARER, client_assertion};
use warden_identity::dpop;
use warden_identity::token::{GrantedAction, TASK_DETAIL_TYPE, TaskDetail};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// What went wrong talking to Warden.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Warden refused, with an OAuth (or admin API) error.
    #[error("HTTP {status} {error}: {description}")]
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    #[error("cannot reach Warden: {0}")]
    Http(String),
    #[error("unexpected answer from Warden: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The OAuth error code, when Warden refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The task part of a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub task_id: String,
    pub purpose: String,
    pub actions: Vec<GrantedAction>,
}

impl TaskRequest {
    pub fn new(task_id: &str, purpose: &str) -> Self {
        Self {
            task_id: task_id.to_owned(),
            purpose: purpose.to_owned(),
            actions: Vec::new(),
        }
    }

    /// Adds an action, e.g. `(ActionKind::CallTool, "crm/search")`.
    pub fn action(mut self, action: ActionKind, resource: &str) -> Self {
        self.actions.push(GrantedAction {
            action,
            resource: resource.to_owned(),
        });
        self
    }

    pub fn call_tool(self, tool: &str) -> Self {
        self.action(ActionKind::CallTool, tool)
    }

    /// The RFC 9396 `authorization_details` parameter.
    pub fn authorization_details(&self) -> String {
        json!([{
            "type": TASK_DETAIL_TYPE,
            "task_id": self.task_id,
            "purpose": self.purpose,
            "actions": self.actions,
        }])
        .to_string()
    }
}

/// A token response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    #[serde(default)]
    pub authorization_details: Vec<TaskDetail>,
    /// Requested actions Warden did not grant, with the reason.
    #[serde(default, rename = "warden_refused")]
    pub refused: Vec<Value>,
    #[serde(default)]
    pub issued_token_type: Option<String>,
}

impl TokenResponse {
    /// The granted actions.
    pub fn granted(&self) -> Vec<GrantedAction> {
        self.authorization_details
            .iter()
            .flat_map(|d| d.actions.clone())
            .collect()
    }
}

pub mod mcp;

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn read(mut resp: ureq::http::Response<ureq::Body>) -> Result<Value, ClientError> {
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|_| ClientError::Protocol(format!("HTTP {status}: {text}")))?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    // OAuth errors are flat; the admin API nests them.
    let (error, description) = match body.get("error") {
        Some(Value::String(e)) => (
            e.clone(),
            body.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        Some(Value::Object(o)) => (
            o.get("code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            o.get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        _ => (String::new(), text),
    };
    Err(ClientError::Refused {
        status,
        error,
        description,
    })
}

/// An agent talking to Warden.
#[derive(Debug, Clone)]
pub struct AgentClient {
    issuer: String,
    agent: String,
    key: KeyPair,
    dpop: Option<KeyPair>,
    http: ureq::Agent,
}

impl AgentClient {
    /// An agent with identity key `key`, which also signs its DPoP proofs.
    pub fn new(issuer: &str, agent: &str, key: KeyPair) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            agent: agent.to_owned(),
            dpop: Some(key.clone()),
            key,
            http: http(),
        }
    }

    /// Uses a separate DPoP key (e.g. one per process), or none (bearer tokens, for agents
    /// registered without DPoP).
    pub fn with_dpop_key(mut self, key: Option<KeyPair>) -> Self {
        self.dpop = key;
        self
    }

    pub fn agent(&self) -> &str {
        &self.agent
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.issuer)
    }

    /// A fresh client assertion for this agent.
    pub fn assertion(&self) -> String {
        client_assertion(&self.key, &self.agent, &self.token_endpoint(), now())
    }

    /// A DPoP proof for `method url` (with `ath` when `token` is given).
    pub fn proof(&self, method: &str, url: &str, token: Option<&str>) -> Option<String> {
        self.dpop
            .as_ref()
            .map(|k| dpop::proof(k, method, url, token, now()))
    }

    fn post_token(&self, form: &[(&str, &str)]) -> Result<TokenResponse, ClientError> {
        let endpoint = self.token_endpoint();
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(&endpoint)
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(p) = self.proof("POST", &endpoint, None) {
            req = req.header("DPoP", p);
        }
        let resp = req
            .send(body)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        serde_json::from_value(read(resp)?).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// A task token for `resource` (client credentials, `private_key_jwt`).
    pub fn token(&self, resource: &str, task: &TaskRequest) -> Result<TokenResponse, ClientError> {
        let assertion = self.assertion();
        let details = task.authorization_details();
        self.post_token(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
            ("resource", resource),
            ("authorization_details", &details),
        ])
    }

    /// Delegation: this agent (the child) exchanges its parent's token for its own, narrowed
    /// to `task.actions` when given (else everything the parent may pass on).
    pub fn exchange(
        &self,
        parent_token: &str,
        task: Option<&TaskRequest>,
    ) -> Result<TokenResponse, ClientError> {
        let assertion = self.assertion();
        let details = task.map(TaskRequest::authorization_details);
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", parent_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("actor_token", assertion.as_str()),
            ("actor_token_type", JWT_TYPE),
        ];
        if let Some(d) = &details {
            form.push(("authorization_details", d));
        }
        self.post_token(&form)
    }

    /// On-behalf-of: a user's IdP token in, a task token with `sub` = user out.
    pub fn on_behalf_of(
        &self,
        user_token: &str,
        resource: &str,
        task: &TaskRequest,
    ) -> Result<TokenResponse, ClientError> {
        let assertion = self.assertion();
        let details = task.authorization_details();
        self.post_token(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", user_token),
            ("subject_token_type", JWT_TYPE),
            ("actor_token", &assertion),
            ("actor_token_type", JWT_TYPE),
            ("resource", resource),
            ("authorization_details", &details),
        ])
    }

    /// `GET url` with the token and a fresh DPoP proof; the JSON answer.
    pub fn get(&self, url: &str, token: &str) -> Result<Value, ClientError> {
        let mut req = self.http.get(url);
        match self.proof("GET", url, Some(token)) {
            Some(p) => {
                req = req
                    .header("Authorization", format!("DPoP {token}"))
                    .header("DPoP", p)
            }
            None => req = req.header("Authorization", format!("Bearer {token}")),
        }
        read(req.call().map_err(|e| ClientError::Http(e.to_string()))?)
    }

    /// What Warden's resource check makes of `token` for `resource`.
    pub fn whoami(&self, resource: &str, token: &str) -> Result<Value, ClientError> {
        let q: String = form_urlencoded::byte_serialize(resource.as_bytes()).collect();
        self.get(&format!("{}/oauth/whoami?resource={q}", self.issuer), token)
    }
}

/// The admin API, with an admin credential.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    secret: String,
    http: ureq::Agent,
}

impl AdminClient {
    pub fn new(base: &str, secret: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
            http: http(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let url = format!("{}/admin/v1{path}", self.base);
        let auth = format!("Bearer {}", self.secret);
        let resp = match (method, body) {
            ("GET", _) => self.http.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self.http.delete(&url).header("Authorization", &auth).call(),
            ("PUT", b) => self
                .http
                .put(&url)
                .header("Authorization", &auth)
                .send_json(b.unwrap_or(Value::Null)),
            (_, b) => self
                .http
                .post(&url)
                .header("Authorization", &auth)
                .send_json(b.unwrap_or_else(|| json!({}))),
        };
        read(resp.map_err(|e| ClientError::Http(e.to_string()))?)
    }

    fn agent_of(v: Value) -> Result<AgentRecord, ClientError> {
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub fn agents(&self) -> Result<Vec<AgentRecord>, ClientError> {
        serde_json::from_value(self.call("GET", "/agents", None)?)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub fn agent(&self, id: &str) -> Result<AgentRecord, ClientError> {
        Self::agent_of(self.call("GET", &format!("/agents/{id}"), None)?)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create_agent(
        &self,
        id: &str,
        name: &str,
        sponsors: &[String],
        purpose: &str,
        autonomy: AutonomyLevel,
        dpop_required: bool,
        key: &PublicJwk,
    ) -> Result<AgentRecord, ClientError> {
        Self::agent_of(self.call(
            "POST",
            "/agents",
            Some(
                json!({"id": id, "name": name, "sponsors": sponsors, "purpose": purpose,
                "autonomy": autonomy, "dpop_required": dpop_required, "public_jwk": key}),
            ),
        )?)
    }

    /// `suspend`, `resume` or `revoke`.
    pub fn set_state(
        &self,
        id: &str,
        verb: &str,
        reason: &str,
    ) -> Result<AgentRecord, ClientError> {
        Self::agent_of(self.call(
            "POST",
            &format!("/agents/{id}/{verb}"),
            Some(json!({"reason": reason})),
        )?)
    }

    pub fn set_autonomy(&self, id: &str, a: AutonomyLevel) -> Result<AgentRecord, ClientError> {
        Self::agent_of(self.call(
            "PUT",
            &format!("/agents/{id}/autonomy"),
            Some(json!({"autonomy": a})),
        )?)
    }

    pub fn add_sponsor(&self, id: &str, sponsor: &str) -> Result<AgentRecord, ClientError> {
        Self::agent_of(self.call(
            "POST",
            &format!("/agents/{id}/sponsors"),
            Some(json!({"sponsor": sponsor})),
        )?)
    }

    /// Returns the agent and whether it was suspended for losing its last sponsor.
    pub fn remove_sponsor(
        &self,
        id: &str,
        sponsor: &str,
    ) -> Result<(AgentRecord, bool), ClientError> {
        let enc: String = form_urlencoded::byte_serialize(sponsor.as_bytes()).collect();
        let v = self.call("DELETE", &format!("/agents/{id}/sponsors/{enc}"), None)?;
        let suspended = v.get("suspended").and_then(Value::as_bool).unwrap_or(false);
        Ok((
            Self::agent_of(v.get("agent").cloned().unwrap_or_default())?,
            suspended,
        ))
    }

    pub fn rotate_key(
        &self,
        id: &str,
        key: &PublicJwk,
        grace_secs: i64,
    ) -> Result<AgentRecord, ClientError> {
        Self::agent_of(self.call(
            "POST",
            &format!("/agents/{id}/keys"),
            Some(json!({"public_jwk": key, "grace_secs": grace_secs})),
        )?)
    }

    /// Revokes a `token` (jti), `task` or `agent`.
    pub fn revoke(&self, kind: &str, value: &str, reason: &str) -> Result<Value, ClientError> {
        self.call(
            "POST",
            "/revocations",
            Some(json!({"kind": kind, "value": value, "reason": reason})),
        )
    }

    pub fn revocations(&self) -> Result<Value, ClientError> {
        self.call("GET", "/revocations", None)
    }

    /// Kills an agent (`mode`: `forced` or `graceful`).
    pub fn kill(&self, id: &str, mode: &str, reason: &str) -> Result<Value, ClientError> {
        self.call(
            "POST",
            &format!("/agents/{id}/kill"),
            Some(json!({"mode": mode, "reason": reason})),
        )
    }

    /// Kills every agent of `sponsor`, or every agent when `sponsor` is `None`.
    pub fn kill_many(
        &self,
        sponsor: Option<&str>,
        mode: &str,
        reason: &str,
    ) -> Result<Value, ClientError> {
        let body = match sponsor {
            Some(sp) => json!({"sponsor": sp, "mode": mode, "reason": reason}),
            None => json!({"all": true, "mode": mode, "reason": reason}),
        };
        self.call("POST", "/kill", Some(body))
    }

    /// Approval requests, newest first (`state`: pending, approved, denied, expired, used).
    pub fn approvals(
        &self,
        state: Option<&str>,
        agent: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut q: Vec<String> = Vec::new();
        for (k, v) in [("state", state), ("agent", agent)] {
            if let Some(v) = v {
                let enc: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                q.push(format!("{k}={enc}"));
            }
        }
        let path = if q.is_empty() {
            "/approvals".to_owned()
        } else {
            format!("/approvals?{}", q.join("&"))
        };
        self.call("GET", &path, None)
    }

    pub fn approval(&self, id: &str) -> Result<Value, ClientError> {
        self.call("GET", &format!("/approvals/{id}"), None)
    }

    /// Every upstream tool with its pin status (the server lists the tools again first).
    pub fn tools(&self) -> Result<Value, ClientError> {
        self.call("GET", "/tools", None)
    }

    /// One tool: its status, approved and current definitions.
    pub fn tool(&self, upstream: &str, tool: &str) -> Result<Value, ClientError> {
        self.call("GET", &format!("/tools/{upstream}/{tool}"), None)
    }

    /// Approves the current definition of a tool (which must hash to `hash`, if given).
    pub fn approve_tool(
        &self,
        upstream: &str,
        tool: &str,
        hash: Option<&str>,
        reason: &str,
    ) -> Result<Value, ClientError> {
        self.call(
            "POST",
            &format!("/tools/{upstream}/{tool}/approve"),
            Some(json!({"hash": hash, "reason": reason})),
        )
    }

    /// The live taints (of one agent, or all).
    pub fn taints(&self, agent: Option<&str>) -> Result<Value, ClientError> {
        let q = agent.map_or_else(String::new, |a| {
            let a: String = form_urlencoded::byte_serialize(a.as_bytes()).collect();
            format!("?agent={a}")
        });
        self.call("GET", &format!("/taints{q}"), None)
    }

    /// Ends the taint of one task of `agent`, or of all its tasks.
    pub fn untaint(
        &self,
        agent: &str,
        task: Option<&str>,
        reason: &str,
    ) -> Result<Value, ClientError> {
        self.call(
            "POST",
            &format!("/agents/{agent}/untaint"),
            Some(json!({"task": task, "reason": reason})),
        )
    }

    /// Approves (`true`) or denies a pending approval, with a reason.
    pub fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<Value, ClientError> {
        let verb = if approve { "approve" } else { "deny" };
        self.call(
            "POST",
            &format!("/approvals/{id}/{verb}"),
            Some(json!({"reason": reason})),
        )
    }

    /// Circuit breakers counting something, and agents' incidents.
    /// An agent's learned baseline, risk and quarantine state (MO-1).
    pub fn baseline(&self, agent: &str) -> Result<Value, ClientError> {
        let a: String = form_urlencoded::byte_serialize(agent.as_bytes()).collect();
        self.call("GET", &format!("/agents/{a}/baseline"), None)
    }

    /// Alerts of the behavioural monitor, oldest first.
    pub fn alerts(
        &self,
        agent: Option<&str>,
        since_ms: i64,
        limit: u32,
    ) -> Result<Value, ClientError> {
        let mut q = format!("?since_ms={since_ms}&limit={limit}");
        if let Some(a) = agent {
            q.push_str("&agent=");
            q.extend(form_urlencoded::byte_serialize(a.as_bytes()));
        }
        self.call("GET", &format!("/alerts{q}"), None)
    }

    pub fn breakers(&self) -> Result<Value, ClientError> {
        self.call("GET", "/breakers", None)
    }

    /// Closes an agent's breakers (one `scope`, or all and its incident count).
    pub fn reset_breakers(
        &self,
        agent: &str,
        scope: Option<&str>,
        reason: &str,
    ) -> Result<Value, ClientError> {
        self.call(
            "POST",
            &format!("/agents/{agent}/breakers/reset"),
            Some(json!({"reason": reason, "scope": scope})),
        )
    }

    /// Creates another admin credential; returns its secret (shown once).
    pub fn create_admin(&self, name: &str) -> Result<String, ClientError> {
        let v = self.call("POST", "/admins", Some(json!({"name": name})))?;
        v.get("secret")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Protocol("no secret in the answer".into()))
    }

    /// Which credential this is.
    pub fn whoami(&self) -> Result<Value, ClientError> {
        self.call("GET", "/whoami", None)
    }
}

/// A stand-in for a company identity provider, for tests and demos of on-behalf-of: an
/// Ed25519 key, its JWKS (for `[[oauth.identity_providers]] jwks_file`), and user tokens.
#[derive(Debug, Clone)]
pub struct TestIdp {
    pub issuer: String,
    key: KeyPair,
}

impl TestIdp {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            key: KeyPair::generate(),
        }
    }

    /// The JWKS document Warden should trust.
    pub fn jwks(&self) -> Value {
        let j = self.key.public_jwk();
        json!({"keys": [{"kty": j.kty, "crv": j.crv, "x": j.x, "kid": j.kid, "alg": "EdDSA", "use": "sig"}]})
    }

    /// A signed user token for `sub`, addressed to `aud`, valid for `ttl` seconds (negative:
    /// already expired).
    pub fn user_token(&self, sub: &str, aud: &str, ttl: i64) -> String {
        let now = now();
        let header = json!({"typ": "JWT", "kid": self.key.public_jwk().kid});
        let claims =
            json!({"iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + ttl});
        match (header, claims) {
            (Value::Object(h), Value::Object(c)) => {
                warden_identity::jws::sign(self.key.signing_key(), &h, &c)
            }
            _ => String::new(),
        }
    }
}
