//! Client authentication with `private_key_jwt` (RFC 7523 §2.2, RFC 7521): the agent signs a
//! short-lived JWT with its own key; Warden checks it against the registered public keys and
//! accepts each `jti` once.

use serde_json::Value;
use warden_core::AgentRecord;

use crate::jws::{self, JwsError};
use crate::replay::{ReplayCache, ReplayError};
use crate::verifying_key;

/// The `client_assertion_type` for JWT client authentication.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Why a client assertion was refused (error code `invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("client assertion: {0}")]
    Jws(#[from] JwsError),
    #[error("client assertion needs `{0}`")]
    Missing(&'static str),
    #[error("client assertion iss and sub must both be the agent id")]
    Subject,
    #[error("client assertion aud must name this token endpoint or issuer")]
    Audience,
    #[error("client assertion has expired")]
    Expired,
    #[error("client assertion is not valid yet")]
    NotYetValid,
    #[error("client assertion lives too long: at most {0} seconds")]
    TooLong(i64),
    #[error("client assertion jti was already used")]
    Replayed,
    #[error("the replay cache is full; try again shortly")]
    CacheFull,
    #[error("client assertion is not signed by any current key of agent {0}")]
    NoKey(String),
    #[error("client assertion typ `{0}` is not accepted")]
    Typ(String),
}

/// Limits on client assertions.
#[derive(Debug, Clone, Copy)]
pub struct AssertionPolicy {
    /// Longest accepted life (`exp - now`, and `exp - iat` when `iat` is given).
    pub max_lifetime: i64,
    /// Tolerated clock skew for `iat`/`nbf`.
    pub skew: i64,
}

impl Default for AssertionPolicy {
    fn default() -> Self {
        Self {
            max_lifetime: 300,
            skew: 5,
        }
    }
}

/// The agent an assertion claims to come from (unverified; to look up its keys).
pub fn claimed_agent(assertion: &str) -> Result<String, AssertionError> {
    let v = jws::peek(assertion)?;
    v.claims
        .get("sub")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(AssertionError::Missing("sub"))
}

/// Verifies `assertion` as coming from `agent` and addressed to one of `audiences`, and
/// uses up its `jti`.
pub fn verify_assertion(
    assertion: &str,
    agent: &AgentRecord,
    audiences: &[&str],
    policy: AssertionPolicy,
    replay: &ReplayCache,
    now: i64,
) -> Result<(), AssertionError> {
    let peek = jws::peek(assertion)?;
    if let Some(typ) = peek.header.get("typ").and_then(Value::as_str)
        && !["jwt", "client-authentication+jwt"].contains(&typ.to_ascii_lowercase().as_str())
    {
        return Err(AssertionError::Typ(typ.to_owned()));
    }
    let kid = peek.header.get("kid").and_then(Value::as_str);
    let mut verified = None;
    let mut last = AssertionError::NoKey(agent.id.to_string());
    for k in agent
        .valid_keys(now)
        .filter(|k| kid.is_none_or(|kid| kid == k.jwk.kid))
    {
        let Ok(vk) = verifying_key(&k.jwk) else {
            continue;
        };
        match jws::verify(assertion, &vk, None) {
            Ok(v) => {
                verified = Some(v);
                break;
            }
            Err(JwsError::BadSignature) => {}
            Err(e) => last = e.into(),
        }
    }
    let claims = verified.ok_or(last)?.claims;
    let s = |k: &'static str| claims.get(k).and_then(Value::as_str);
    let id = agent.id.as_str();
    if s("iss") != Some(id) || s("sub") != Some(id) {
        return Err(AssertionError::Subject);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audiences.contains(&a.as_str()),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.contains(&a)),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::Audience);
    }
    let n = |k: &'static str| claims.get(k).and_then(Value::as_i64);
    let exp = n("exp").ok_or(AssertionError::Missing("exp"))?;
    if exp <= now {
        return Err(AssertionError::Expired);
    }
    if exp > now + policy.max_lifetime {
        return Err(AssertionError::TooLong(policy.max_lifetime));
    }
    if let Some(iat) = n("iat") {
        if iat > now + policy.skew {
            return Err(AssertionError::NotYetValid);
        }
        if exp - iat > policy.max_lifetime {
            return Err(AssertionError::TooLong(policy.max_lifetime));
        }
    }
    if n("nbf").is_some_and(|nbf| nbf > now + policy.skew) {
        return Err(AssertionError::NotYetValid);
    }
    let jti = s("jti")
        .filter(|j| !j.is_empty())
        .ok_or(AssertionError::Missing("jti"))?;
    replay.use_once(id, jti, exp, now).map_err(|e| match e {
        ReplayError::Replayed => AssertionError::Replayed,
        ReplayError::Full => AssertionError::CacheFull,
    })
}

/// Signs a client assertion (client side): `iss` = `sub` = the agent, `aud` = the token
/// endpoint, 60 seconds of life, a random `jti`.
pub fn client_assertion(key: &crate::KeyPair, agent: &str, audience: &str, now: i64) -> String {
    use base64::Engine as _;
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let jti = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce);
    let header = serde_json::json!({"typ": "JWT", "kid": key.public_jwk().kid});
    let claims = serde_json::json!({
        "iss": agent, "sub": agent, "aud": audience, "iat": now, "exp": now + 60, "jti": jti
    });
    match (header, claims) {
        (Value::Object(h), Value::Object(c)) => jws::sign(key.signing_key(), &h, &c),
        _ => String::new(),
    }
}
