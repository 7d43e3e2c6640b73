//! Bounded single-use caches for assertion `jti`s (RFC 7523 §3) and DPoP proof `jti`s
//! (RFC 9449 §11.1).
//!
//! An entry lives until the moment its token or proof would be refused anyway (its `exp`,
//! or `iat` plus the acceptance window), so a replay inside the window is caught and memory
//! stays bounded. Expired entries are swept from a shard at most every [`SWEEP_SECS`] (so
//! the cache holds about what the window holds, not its capacity: a soak found it growing
//! to the cap when it was swept only when full). Sixteen shards, each behind its own short
//! lock: no global lock on the request path. When a shard is full even after dropping
//! expired entries, new uses are refused (fail closed) rather than remembered badly.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

const SHARDS: usize = 16;

/// How often (seconds) a shard drops its expired entries, at the latest.
pub const SWEEP_SECS: i64 = 5;

/// One shard: the entries, and when they are next swept.
#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u128, i64>,
    next_sweep: i64,
}

impl Shard {
    fn sweep(&mut self, now: i64) {
        self.map.retain(|_, exp| *exp >= now);
        self.next_sweep = now.saturating_add(SWEEP_SECS);
    }
}

/// Why a `jti` was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("this jti was already used")]
    Replayed,
    #[error("the replay cache is full; try again shortly")]
    Full,
}

/// A set of used identifiers, each remembered until its expiry.
#[derive(Debug)]
pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl ReplayCache {
    /// Remembers up to `capacity` live identifiers.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Records the first use of `id` (scoped by `scope`, e.g. the issuer), remembered until
    /// `expires_at`. A second use before then is refused.
    pub fn use_once(
        &self,
        scope: &str,
        id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        let mut h = Sha256::new();
        h.update(scope.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        let key = u128::from_le_bytes(key);
        let shard = self
            .shards
            .get((key as usize) % SHARDS)
            .ok_or(ReplayError::Full)?;
        let mut shard = shard.lock().map_err(|_| ReplayError::Full)?;
        if let Some(&exp) = shard.map.get(&key)
            && exp >= now
        {
            return Err(ReplayError::Replayed);
        }
        if now >= shard.next_sweep || shard.map.len() >= self.per_shard {
            shard.sweep(now);
            if shard.map.len() >= self.per_shard {
                return Err(ReplayError::Full);
            }
        }
        shard.map.insert(key, expires_at);
        Ok(())
    }

    /// Live entries (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.map.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_refused_until_expiry() {
        let c = ReplayCache::new(100);
        c.use_once("a", "j1", 10, 0).unwrap();
        assert_eq!(c.use_once("a", "j1", 10, 5), Err(ReplayError::Replayed));
        // Another scope is another identifier.
        c.use_once("b", "j1", 10, 5).unwrap();
        // After expiry the token itself is refused elsewhere; the slot may be reused.
        c.use_once("a", "j1", 20, 11).unwrap();
    }

    #[test]
    fn full_cache_refuses_instead_of_forgetting() {
        let c = ReplayCache::new(16);
        let mut refused = 0;
        for i in 0..200 {
            if c.use_once("s", &i.to_string(), 100, 0) == Err(ReplayError::Full) {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert!(c.len() <= 16);
        // Once the entries expire they are dropped to make room.
        c.use_once("s", "later", 300, 200).unwrap();
    }

    #[test]
    fn expired_entries_are_swept_without_waiting_for_the_cache_to_fill() {
        let c = ReplayCache::new(1_000_000);
        for i in 0..1000 {
            c.use_once("s", &i.to_string(), 10, 0).unwrap();
        }
        assert_eq!(c.len(), 1000);
        // Past their expiry and the sweep interval, each shard's next use sweeps it.
        for i in 0..200 {
            c.use_once("s", &format!("n{i}"), 100, 10 + SWEEP_SECS)
                .unwrap();
        }
        assert!(c.len() <= 200, "{} entries left", c.len());
    }
}
