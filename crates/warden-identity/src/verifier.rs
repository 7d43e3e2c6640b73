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

/// Verified signatures by token digest, bounded; entries are dropped at the token's `exp`.
#[derive(Debug)]
struct SignatureCache {
    shards: Vec<Mutex<HashMap<[u8; 32], Arc<AccessClaims>>>>,
    per_shard: usize,
}

impl SignatureCache {
    fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> Option<&Mutex<HashMap<[u8; 32], Arc<AccessClaims>>>> {
        self.shards.get(usize::from(key[0]) % SHARDS)
    }

    fn get(&self, key: &[u8; 32]) -> Option<Arc<AccessClaims>> {
        self.shard(key)?.lock().ok()?.get(key).cloned()
    }

    fn put(&self, key: [u8; 32], claims: Arc<AccessClaims>, now: i64) {
        let Some(Ok(mut map)) = self.shard(&key).map(|s| s.lock()) else {
            return;
        };
        if map.len() >= self.per_shard {
            map.retain(|_, c| c.exp > now);
            if map.len() >= self.per_shard {
                map.clear(); // a cache: forgetting costs a signature check, nothing else
            }
        }
        map.insert(key, claims);
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
