//! Warden's access tokens: EdDSA JWTs (`typ: at+jwt`, RFC 9068) bound to one audience, one
//! task, a list of granted actions and (normally) one DPoP key.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warden_core::{ActionKind, AutonomyLevel};

use crate::jws::{self, JwsError};
use crate::{KeyPair, ServerKeys};

/// The JOSE `typ` of Warden's access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The RFC 9396 `type` of Warden's authorization details.
pub const TASK_DETAIL_TYPE: &str = "warden_task";

/// One action a token may be used for: `call_tool` on `crm/search`, `read_resource` on
/// `docs/file:///a`, `get_prompt` on `crm/summary`, `send_message` to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantedAction {
    pub action: ActionKind,
    pub resource: String,
}

/// RFC 9396 authorization details of type `warden_task`: what a task needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub task_id: String,
    #[serde(default)]
    pub purpose: String,
    /// Requested (in a request) or granted (in a token) actions.
    #[serde(default)]
    pub actions: Vec<GrantedAction>,
    /// A user the agent acts for. Only a verified user token sets it (token exchange);
    /// claimed in a client-credentials request, it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

/// An RFC 8693 actor: who acts now, and (nested) who acted before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// The actors, current first.
    pub fn chain(&self) -> Vec<&str> {
        let mut out = vec![self.sub.as_str()];
        let mut next = self.act.as_deref();
        while let Some(a) = next {
            out.push(&a.sub);
            next = a.act.as_deref();
        }
        out
    }
}

/// Proof-of-possession confirmation (RFC 9449 §6): the DPoP key's thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// The claims of a Warden access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The principal: the agent itself, the root agent of a delegation, or the user an
    /// agent acts for.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// The agent that holds and uses this token.
    pub client_id: String,
    /// Exactly one `warden_task` entry, with the granted actions.
    pub authorization_details: Vec<TaskDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Absent only for agents that opted out of DPoP: a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    pub autonomy: AutonomyLevel,
    /// The humans accountable for the agent using the token.
    pub sponsor: Vec<String>,
    /// Delegation hops from the root task token (0 for the root).
    #[serde(default)]
    pub depth: u32,
    /// The `jti`s of the tokens this one was derived from, root first: revoking any of them
    /// revokes this one (subtree revocation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
}

impl AccessClaims {
    /// The task this token is for.
    pub fn task(&self) -> Option<&TaskDetail> {
        self.authorization_details
            .iter()
            .find(|d| d.kind == TASK_DETAIL_TYPE)
    }

    /// True when the token allows `action` on `resource`.
    pub fn grants(&self, action: ActionKind, resource: &str) -> bool {
        self.task().is_some_and(|t| {
            t.actions
                .iter()
                .any(|a| a.action == action && a.resource == resource)
        })
    }

    /// The user the agent acts for, if the token was exchanged for a user's token.
    pub fn on_behalf_of(&self) -> Option<&str> {
        self.task().and_then(|t| t.on_behalf_of.as_deref())
    }

    /// Every agent whose state matters for this token: the acting agent, the agents it
    /// acts for (delegation), the root agent.
    pub fn agents(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.act.as_ref().map(Actor::chain).unwrap_or_default();
        if self.on_behalf_of().is_none() {
            out.push(&self.sub);
        }
        if !out.contains(&self.client_id.as_str()) {
            out.push(&self.client_id);
        }
        out
    }

    /// The agents that delegated to the acting agent, root first (for the PE's
    /// `context.delegation.chain`).
    pub fn delegated_by(&self) -> Vec<&str> {
        let mut chain = self.agents();
        chain.retain(|a| *a != self.client_id);
        chain.reverse();
        chain
    }
}

/// Signs `claims` with Warden's current key.
pub fn sign_access_token(key: &KeyPair, claims: &AccessClaims) -> Result<String, JwsError> {
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(ACCESS_TOKEN_TYP));
    header.insert("kid".into(), Value::from(key.public_jwk().kid));
    let Value::Object(c) = serde_json::to_value(claims).map_err(|_| JwsError::BadJson("claims"))?
    else {
        return Err(JwsError::BadJson("claims"));
    };
    Ok(jws::sign(key.signing_key(), &header, &c))
}

/// Checks the signature and `typ` of one of Warden's access tokens and parses its claims.
/// Time, audience and revocation are the caller's checks.
pub fn decode_access_token(token: &str, keys: &ServerKeys) -> Result<AccessClaims, JwsError> {
    let peek = jws::peek(token)?;
    let kid = peek
        .header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| JwsError::NoKey("no kid".into()))?;
    let key = keys
        .verifying_by_kid(kid)
        .ok_or_else(|| JwsError::NoKey(format!("kid `{kid}` is not one of Warden's keys")))?;
    let v = jws::verify(token, key, Some(ACCESS_TOKEN_TYP))?;
    serde_json::from_value(Value::Object(v.claims)).map_err(|_| JwsError::BadJson("payload"))
}
