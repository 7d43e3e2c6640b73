//! Compact JWS with EdDSA (Ed25519) only — RFC 7515 / RFC 8037.
//!
//! Deliberately narrow: the only accepted `alg` is `EdDSA`, so `none`, `HS256` signed with a
//! public key, and every other algorithm-confusion trick fail before any key is touched. The
//! header may carry `typ`, `kid` and `jwk` (DPoP); `crit` is refused. Verification uses
//! `verify_strict` (no small-order keys, canonical signatures).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};

/// Why a token was refused. The message is for logs and audit; clients get a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("the {0} is not base64url JSON")]
    BadJson(&'static str),
    #[error("alg `{0}` is not accepted; only EdDSA")]
    BadAlg(String),
    #[error("typ `{found}` where `{expected}` is required")]
    BadTyp { expected: String, found: String },
    #[error("critical header parameters are not supported")]
    Crit,
    #[error("signature does not verify")]
    BadSignature,
    #[error("no key for this token: {0}")]
    NoKey(String),
}

/// A token's header and claims (verified, except from [`peek`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

/// Signs `claims` with `key`; the header gets `alg: EdDSA` plus `extra` (typ, kid, jwk).
pub fn sign(
    key: &SigningKey,
    extra_header: &Map<String, Value>,
    claims: &Map<String, Value>,
) -> String {
    let mut header = extra_header.clone();
    header.insert("alg".into(), Value::from("EdDSA"));
    let h = B64.encode(Value::Object(header).to_string());
    let c = B64.encode(Value::Object(claims.clone()).to_string());
    let input = format!("{h}.{c}");
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.to_bytes()))
}

/// The header and claims of a token, *unverified*: only to find which key to verify with.
pub fn peek(token: &str) -> Result<Verified, JwsError> {
    let (h, c, _) = split(token)?;
    Ok(Verified {
        header: json_part(h, "header")?,
        claims: json_part(c, "payload")?,
    })
}

fn split(token: &str) -> Result<(&str, &str, &str), JwsError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) if !h.is_empty() && !c.is_empty() && !s.is_empty() => {
            Ok((h, c, s))
        }
        _ => Err(JwsError::Malformed),
    }
}

fn json_part(part: &str, what: &'static str) -> Result<Map<String, Value>, JwsError> {
    let bytes = B64.decode(part).map_err(|_| JwsError::BadJson(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwsError::BadJson(what)),
    }
}

/// Verifies `token` with `key`: EdDSA only, `typ` as required (compared case-insensitively,
/// per RFC 7515), strict signature check.
pub fn verify(token: &str, key: &VerifyingKey, typ: Option<&str>) -> Result<Verified, JwsError> {
    let (h, c, s) = split(token)?;
    let header = json_part(h, "header")?;
    match header.get("alg").and_then(Value::as_str) {
        Some("EdDSA") => {}
        Some(other) => return Err(JwsError::BadAlg(other.to_owned())),
        None => return Err(JwsError::BadAlg("(missing)".into())),
    }
    if header.contains_key("crit") {
        return Err(JwsError::Crit);
    }
    if let Some(expected) = typ {
        let found = header.get("typ").and_then(Value::as_str).unwrap_or("");
        if !found.eq_ignore_ascii_case(expected) {
            return Err(JwsError::BadTyp {
                expected: expected.to_owned(),
                found: found.to_owned(),
            });
        }
    }
    let sig_bytes = B64.decode(s).map_err(|_| JwsError::Malformed)?;
    let sig = Signature::from_slice(&sig_bytes).map_err(|_| JwsError::BadSignature)?;
    let input_len = h.len() + 1 + c.len();
    let input = token.get(..input_len).ok_or(JwsError::Malformed)?;
    key.verify_strict(input.as_bytes(), &sig)
        .map_err(|_| JwsError::BadSignature)?;
    Ok(Verified {
        header,
        claims: json_part(c, "payload")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        json!({"iss": "a", "sub": "a", "exp": 10})
            .as_object()
            .cloned()
            .unwrap()
    }

    fn header(typ: &str) -> Map<String, Value> {
        json!({"typ": typ, "kid": "k"})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn round_trip() {
        let k = KeyPair::generate();
        let t = sign(k.signing_key(), &header("at+jwt"), &claims());
        let v = verify(&t, &k.signing_key().verifying_key(), Some("at+jwt")).unwrap();
        assert_eq!(v.claims, claims());
        assert_eq!(v.header["alg"], "EdDSA");
    }

    fn forge(header: Value, claims: &Map<String, Value>, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            B64.encode(header.to_string()),
            B64.encode(Value::Object(claims.clone()).to_string()),
            B64.encode(sig)
        )
    }

    #[test]
    fn alg_none_and_hs256_are_refused_before_any_key_is_used() {
        let k = KeyPair::generate();
        let vk = k.signing_key().verifying_key();
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none"}"#),
            B64.encode(Value::Object(claims()).to_string())
        );
        assert_eq!(verify(&none, &vk, None), Err(JwsError::Malformed));
        let none_sig = forge(json!({"alg": "none"}), &claims(), b"x");
        assert_eq!(
            verify(&none_sig, &vk, None),
            Err(JwsError::BadAlg("none".into()))
        );
        // HS256 "signed" with the public key as the HMAC secret.
        let hs = forge(json!({"alg": "HS256"}), &claims(), &[0u8; 32]);
        assert_eq!(
            verify(&hs, &vk, None),
            Err(JwsError::BadAlg("HS256".into()))
        );
        let missing = forge(json!({"typ": "JWT"}), &claims(), &[0u8; 64]);
        assert!(matches!(
            verify(&missing, &vk, None),
            Err(JwsError::BadAlg(_))
        ));
    }

    #[test]
    fn tampering_wrong_key_typ_and_crit_are_refused() {
        let k = KeyPair::generate();
        let vk = k.signing_key().verifying_key();
        let t = sign(k.signing_key(), &header("at+jwt"), &claims());
        // Tampered payload.
        let mut parts: Vec<&str> = t.split('.').collect();
        let evil = B64.encode(json!({"iss": "a", "sub": "root", "exp": 10}).to_string());
        parts[1] = &evil;
        assert_eq!(
            verify(&parts.join("."), &vk, None),
            Err(JwsError::BadSignature)
        );
        // Another key.
        let other = KeyPair::generate().signing_key().verifying_key();
        assert_eq!(verify(&t, &other, None), Err(JwsError::BadSignature));
        // typ confusion: an access token is not a DPoP proof.
        assert!(matches!(
            verify(&t, &vk, Some("dpop+jwt")),
            Err(JwsError::BadTyp { .. })
        ));
        let crit = sign(
            k.signing_key(),
            &json!({"crit": ["exp"]}).as_object().cloned().unwrap(),
            &claims(),
        );
        assert_eq!(verify(&crit, &vk, None), Err(JwsError::Crit));
        for junk in ["", "a.b", "a.b.c.d", "...", "!!.!!.!!"] {
            assert!(verify(junk, &vk, None).is_err(), "{junk}");
        }
    }
}
