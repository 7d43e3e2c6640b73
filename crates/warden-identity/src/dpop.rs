//! DPoP proofs (RFC 9449): a fresh JWT per request, signed by the key the token is bound to.
//!
//! Checked here: `typ: dpop+jwt`, `alg: EdDSA`, a public Ed25519 `jwk` in the header (never a
//! private one), the signature, `htm` and `htu` against the request, `iat` inside the window,
//! `ath` against the access token (resource requests), the key's thumbprint against the
//! token's `cnf.jkt`, and the `jti` used once. Proofs are never cached: each is verified.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use warden_core::PublicJwk;

use crate::jws::{self, JwsError};
use crate::replay::{ReplayCache, ReplayError};
use crate::{KeyPair, thumbprint, verifying_key};

/// The JOSE `typ` of a DPoP proof.
pub const DPOP_TYP: &str = "dpop+jwt";

/// Why a DPoP proof was refused (error code `invalid_dpop_proof`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("DPoP proof: {0}")]
    Jws(#[from] JwsError),
    #[error("DPoP proof has no usable public jwk in its header: {0}")]
    BadKey(String),
    #[error("DPoP proof is missing `{0}`")]
    Missing(&'static str),
    #[error("DPoP proof htm `{found}` does not match the request method {expected}")]
    Method { expected: String, found: String },
    #[error("DPoP proof htu `{found}` does not match the request URL {expected}")]
    Url { expected: String, found: String },
    #[error("DPoP proof iat {iat} is outside the accepted window at {now}")]
    Stale { iat: i64, now: i64 },
    #[error("DPoP proof ath does not match the access token")]
    Ath,
    #[error("the DPoP key does not match the token's cnf.jkt")]
    KeyMismatch,
    #[error("DPoP proof was already used")]
    Replayed,
    #[error("the DPoP replay cache is full; try again shortly")]
    CacheFull,
}

impl From<ReplayError> for DpopError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed => Self::Replayed,
            ReplayError::Full => Self::CacheFull,
        }
    }
}

/// How proofs are checked.
#[derive(Debug, Clone, Copy)]
pub struct DpopPolicy {
    /// Oldest accepted `iat`, in seconds before now.
    pub max_age: i64,
    /// Newest accepted `iat`, in seconds after now (clock skew).
    pub skew: i64,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        Self {
            max_age: 60,
            skew: 5,
        }
    }
}

/// The `ath` claim: base64url SHA-256 of the access token.
pub fn ath(access_token: &str) -> String {
    B64.encode(Sha256::digest(access_token.as_bytes()))
}

/// The URL as DPoP compares it: without query and fragment (RFC 9449 §4.3).
pub fn htu_of(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url.get(..end).unwrap_or(url)
}

/// Signs a proof for `method url` (client side), with `ath` when an access token is sent.
pub fn proof(
    key: &KeyPair,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    iat: i64,
) -> String {
    let jwk = key.public_jwk();
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(DPOP_TYP));
    header.insert(
        "jwk".into(),
        serde_json::json!({"kty": jwk.kty, "crv": jwk.crv, "x": jwk.x}),
    );
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let mut claims = Map::new();
    claims.insert("jti".into(), Value::from(B64.encode(nonce)));
    claims.insert("htm".into(), Value::from(method));
    claims.insert("htu".into(), Value::from(htu_of(url)));
    claims.insert("iat".into(), Value::from(iat));
    if let Some(t) = access_token {
        claims.insert("ath".into(), Value::from(ath(t)));
    }
    jws::sign(key.signing_key(), &header, &claims)
}

/// A verified proof: the thumbprint of the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    pub jkt: String,
}

/// Verifies a proof for `method url`. `access_token` is given on resource requests (then
/// `ath` is required); `expected_jkt` when the token is bound.
#[allow(clippy::too_many_arguments)]
pub fn verify_proof(
    proof: &str,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    expected_jkt: Option<&str>,
    policy: DpopPolicy,
    replay: &ReplayCache,
    now: i64,
) -> Result<VerifiedProof, DpopError> {
    let peek = jws::peek(proof)?;
    let jwk = peek
        .header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(DpopError::BadKey("no jwk".into()))?;
    if jwk.contains_key("d") {
        return Err(DpopError::BadKey("the jwk is a private key".into()));
    }
    let field = |k: &str| jwk.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let public = PublicJwk {
        kty: field("kty"),
        crv: field("crv"),
        x: field("x"),
        kid: String::new(),
    };
    let key = verifying_key(&public).map_err(|e| DpopError::BadKey(e.to_string()))?;
    let jkt = thumbprint(&public.crv, &public.x);
    if let Some(expected) = expected_jkt
        && expected != jkt
    {
        return Err(DpopError::KeyMismatch);
    }
    let v = jws::verify(proof, &key, Some(DPOP_TYP))?;
    let claim = |k: &'static str| v.claims.get(k).ok_or(DpopError::Missing(k));
    let htm = claim("htm")?.as_str().unwrap_or("");
    if htm != method {
        return Err(DpopError::Method {
            expected: method.to_owned(),
            found: htm.to_owned(),
        });
    }
    let htu = claim("htu")?.as_str().unwrap_or("");
    if htu_of(htu) != htu_of(url) {
        return Err(DpopError::Url {
            expected: htu_of(url).to_owned(),
            found: htu.to_owned(),
        });
    }
    let iat = claim("iat")?.as_i64().ok_or(DpopError::Missing("iat"))?;
    if iat < now - policy.max_age || iat > now + policy.skew {
        return Err(DpopError::Stale { iat, now });
    }
    if let Some(token) = access_token {
        let found = claim("ath")?.as_str().unwrap_or("");
        if found != ath(token) {
            return Err(DpopError::Ath);
        }
    }
    let jti = claim("jti")?.as_str().filter(|j| !j.is_empty());
    let jti = jti.ok_or(DpopError::Missing("jti"))?;
    // Remembered until the proof is too old to be accepted anyway; scoped by key.
    replay.use_once(&jkt, jti, iat + policy.max_age, now)?;
    Ok(VerifiedProof { jkt })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://warden.example/mcp/crm";

    fn check(p: &str, cache: &ReplayCache, jkt: Option<&str>) -> Result<VerifiedProof, DpopError> {
        verify_proof(
            p,
            "POST",
            URL,
            Some("tok"),
            jkt,
            DpopPolicy::default(),
            cache,
            1000,
        )
    }

    #[test]
    fn a_good_proof_verifies_once() {
        let k = KeyPair::generate();
        let cache = ReplayCache::new(100);
        let p = proof(
            &k,
            "POST",
            "https://warden.example/mcp/crm?x=1",
            Some("tok"),
            1000,
        );
        let jkt = k.public_jwk().kid;
        assert_eq!(check(&p, &cache, Some(&jkt)).unwrap().jkt, jkt);
        assert_eq!(check(&p, &cache, Some(&jkt)), Err(DpopError::Replayed));
    }

    #[test]
    fn every_mismatch_is_refused() {
        let k = KeyPair::generate();
        let cache = ReplayCache::new(100);
        let other = KeyPair::generate().public_jwk().kid;
        let p = |m: &str, u: &str, t: Option<&str>, iat: i64| proof(&k, m, u, t, iat);
        assert_eq!(
            check(&p("POST", URL, Some("tok"), 1000), &cache, Some(&other)),
            Err(DpopError::KeyMismatch)
        );
        assert!(matches!(
            check(&p("GET", URL, Some("tok"), 1000), &cache, None),
            Err(DpopError::Method { .. })
        ));
        assert!(matches!(
            check(
                &p("POST", "https://evil.example/mcp/crm", Some("tok"), 1000),
                &cache,
                None
            ),
            Err(DpopError::Url { .. })
        ));
        assert!(matches!(
            check(&p("POST", URL, Some("tok"), 900), &cache, None),
            Err(DpopError::Stale { .. })
        ));
        assert!(matches!(
            check(&p("POST", URL, Some("tok"), 1100), &cache, None),
            Err(DpopError::Stale { .. })
        ));
        assert_eq!(
            check(&p("POST", URL, Some("other token"), 1000), &cache, None),
            Err(DpopError::Ath)
        );
        assert_eq!(
            check(&p("POST", URL, None, 1000), &cache, None),
            Err(DpopError::Missing("ath"))
        );
        // A proof with a private key in the header, or an access token used as a proof.
        let bad = jws::sign(
            k.signing_key(),
            &serde_json::json!({"typ": "dpop+jwt", "jwk": k.private_jwk()})
                .as_object()
                .cloned()
                .unwrap(),
            &Map::new(),
        );
        assert!(matches!(
            check(&bad, &cache, None),
            Err(DpopError::BadKey(_))
        ));
        let wrong_typ = jws::sign(
            k.signing_key(),
            &serde_json::json!({"typ": "at+jwt", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": k.public_jwk().x}})
                .as_object()
                .cloned()
                .unwrap(),
            &Map::new(),
        );
        assert!(matches!(
            check(&wrong_typ, &cache, None),
            Err(DpopError::Jws(JwsError::BadTyp { .. }))
        ));
    }
}
