//! The resource-server check Warden runs on every request that carries a task token: the
//! token's signature (cached), issuer, lifetime, audience and revocation, then the DPoP
//! proof (never cached).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::ServerKeys;
use crate::dpop::{self, DpopError, DpopPolicy};
use crate::jws::JwsError;
use crate::replay::ReplayCache;
use crate::revocation::Revocations;
use crate::token::{AccessClaims, decode_access_token};

const SHARDS: usize = 16;

/// Why a request's credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no access token")]
    Missing,
    #[error("access token: {0}")]
    Token(#[from] JwsError),
    #[error("access token was issued by `{0}`, not by this Warden")]
    Issuer(String),
    #[error("access token has expired")]
    Expired,
    #[error("access token is not valid yet")]
    NotYetValid,
    #[error("access token is for `{found}`, not for `{expected}`")]
    Audience { expected: String, found: String },
    #[error("{0}")]
    Revoked(String),
    #[error("this token is DPoP-bound: send a DPoP proof with it")]
    ProofMissing,
    #[error("{0}")]
    Dpop(#[from] DpopError),
}

impl AuthError {
    /// The RFC 6750 / RFC 9449 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Dpop(_) | Self::ProofMissing => "invalid_dpop_proof",
            Self::Missing => "invalid_request",
            _ => "invalid_token",
        }
    }
}

/// The request a token is presented with.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    pub token: &'a str,
    /// The `DPoP` header, if any.
    pub proof: Option<&'a str>,
    pub method: &'a str,
    /// The request's full URL as the client addressed it.
    pub url: &'a str,
}

/// Verified signatures by token digest, bounded; expired entries are swept from a shard
/// at most every [`crate::replay::SWEEP_SECS`], so the cache holds the live tokens, not
/// its capacity.
#[derive(Debug)]
struct SignatureCache {
    shards: Vec<Mutex<SignatureShard>>,
    per_shard: usize,
}

#[derive(Debug, Default)]
struct SignatureShard {
    map: HashMap<[u8; 32], Arc<AccessClaims>>,
    next_sweep: i64,
}

impl SignatureCache {
    fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(SignatureShard::default()))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> Option<&Mutex<SignatureShard>> {
        self.shards.get(usize::from(key[0]) % SHARDS)
    }

    fn get(&self, key: &[u8; 32]) -> Option<Arc<AccessClaims>> {
        self.shard(key)?.lock().ok()?.map.get(key).cloned()
    }

    fn put(&self, key: [u8; 32], claims: Arc<AccessClaims>, now: i64) {
        let Some(Ok(mut shard)) = self.shard(&key).map(|s| s.lock()) else {
            return;
        };
        if now >= shard.next_sweep || shard.map.len() >= self.per_shard {
            shard.map.retain(|_, c| c.exp > now);
            shard.next_sweep = now.saturating_add(crate::replay::SWEEP_SECS);
            if shard.map.len() >= self.per_shard {
                shard.map.clear(); // a cache: forgetting costs a signature check, nothing else
            }
        }
        shard.map.insert(key, claims);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.map.len()))
            .sum()
    }
}

/// Verifies task tokens for Warden's resources.
#[derive(Debug)]
pub struct TokenVerifier {
    keys: Arc<ServerKeys>,
    issuer: String,
    revocations: Arc<Revocations>,
    cache: SignatureCache,
    replay: ReplayCache,
    dpop: DpopPolicy,
    skew: i64,
}

impl TokenVerifier {
    pub fn new(
        keys: Arc<ServerKeys>,
        issuer: String,
        revocations: Arc<Revocations>,
        dpop: DpopPolicy,
    ) -> Self {
        Self {
            keys,
            issuer,
            revocations,
            cache: SignatureCache::new(100_000),
            replay: ReplayCache::new(1_000_000),
            dpop,
            skew: dpop.skew,
        }
    }

    /// Checks a token's signature (or finds it in the cache), issuer and lifetime.
    pub fn decode(&self, token: &str, now: i64) -> Result<Arc<AccessClaims>, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let claims = match self.cache.get(&digest) {
            Some(c) => c,
            None => {
                let c = Arc::new(decode_access_token(token, &self.keys)?);
                if c.iss != self.issuer {
                    return Err(AuthError::Issuer(c.iss.clone()));
                }
                self.cache.put(digest, Arc::clone(&c), now);
                c
            }
        };
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        if claims.iat > now + self.skew {
            return Err(AuthError::NotYetValid);
        }
        Ok(claims)
    }

    /// Everything a resource request needs: token, audience, revocation, DPoP. The claims
    /// come back with the autonomy the agent holds now (never more than the token says).
    pub fn verify(
        &self,
        p: Presentation<'_>,
        audience: &str,
        now: i64,
    ) -> Result<Arc<AccessClaims>, AuthError> {
        let claims = self.decode(p.token, now)?;
        if claims.aud != audience {
            return Err(AuthError::Audience {
                expected: audience.to_owned(),
                found: claims.aud.clone(),
            });
        }
        self.check_revocation(&claims)?;
        if let Some(cnf) = &claims.cnf {
            let proof = p.proof.ok_or(AuthError::ProofMissing)?;
            dpop::verify_proof(
                proof,
                p.method,
                p.url,
                Some(p.token),
                Some(&cnf.jkt),
                self.dpop,
                &self.replay,
                now,
            )?;
        }
        Ok(self.revocations.effective(claims))
    }

    /// Revoked token, ancestor, task or agent?
    pub fn check_revocation(&self, claims: &AccessClaims) -> Result<(), AuthError> {
        match self.revocations.check(claims) {
            Some(why) => Err(AuthError::Revoked(why)),
            None => Ok(()),
        }
    }

    /// The DPoP replay cache (shared with the token endpoint).
    pub fn replay_cache(&self) -> &ReplayCache {
        &self.replay
    }

    pub fn dpop_policy(&self) -> DpopPolicy {
        self.dpop
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn keys(&self) -> &ServerKeys {
        &self.keys
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Arc<AccessClaims> {
        Arc::new(AccessClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: "a".into(),
            exp,
            iat: 0,
            jti: "j".into(),
            client_id: "c".into(),
            authorization_details: Vec::new(),
            act: None,
            cnf: None,
            autonomy: warden_core::AutonomyLevel::Junior,
            sponsor: Vec::new(),
            depth: 0,
            parents: Vec::new(),
        })
    }

    #[test]
    fn expired_signatures_are_swept_without_waiting_for_the_cache_to_fill() {
        let cache = SignatureCache::new(100_000);
        for i in 0..1000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            cache.put(key, claims(10), 0);
        }
        assert_eq!(cache.len(), 1000);
        for i in 0..200u32 {
            let mut key = [1u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            cache.put(key, claims(100), 10 + crate::replay::SWEEP_SECS);
        }
        assert!(cache.len() <= 200, "{} entries left", cache.len());
    }
}
