//! MCP sessions seen through Warden, bound to the agent that opened them.
//!
//! An upstream's `Mcp-Session-Id` is recorded when its `initialize` answer passes through
//! Warden, with the agent (token `client_id`) and upstream it belongs to. A later request
//! naming a session Warden does not know, or a session of another agent or upstream, gets
//! HTTP 404 and nothing is forwarded: a stolen or guessed session id is worthless.
//!
//! The table is sharded (no global lock on the call path) and bounded; sessions idle longer
//! than the idle limit are swept.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

const SHARDS: usize = 16;

#[derive(Debug)]
struct Entry {
    agent: String,
    upstream: String,
    last_used: AtomicI64,
}

/// Why a session id is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// Not known (never opened through Warden, expired, or deleted).
    Unknown,
    /// Opened by another agent or for another upstream: answered exactly like `Unknown`.
    NotYours,
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    shards: Vec<RwLock<HashMap<String, Entry>>>,
    hasher: std::collections::hash_map::RandomState,
    len: AtomicUsize,
    max: usize,
    idle_secs: i64,
}

impl Sessions {
    pub fn new(max: usize, idle_secs: i64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            len: AtomicUsize::new(0),
            max,
            idle_secs,
        }
    }

    fn shard(&self, id: &str) -> Option<&RwLock<HashMap<String, Entry>>> {
        let i = usize::try_from(self.hasher.hash_one(id) % SHARDS as u64).unwrap_or(0);
        self.shards.get(i)
    }

    /// Records a new session. False if the table is full (the caller refuses the session).
    pub fn open(&self, id: &str, agent: &str, upstream: &str, now: i64) -> bool {
        if self.len.load(Ordering::Relaxed) >= self.max {
            self.sweep(now);
            if self.len.load(Ordering::Relaxed) >= self.max {
                return false;
            }
        }
        let Some(Ok(mut shard)) = self.shard(id).map(RwLock::write) else {
            return false;
        };
        let entry = Entry {
            agent: agent.to_owned(),
            upstream: upstream.to_owned(),
            last_used: AtomicI64::new(now),
        };
        if shard.insert(id.to_owned(), entry).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Checks that `id` is a live session of `agent` on `upstream`, and touches it.
    pub fn check(
        &self,
        id: &str,
        agent: &str,
        upstream: &str,
        now: i64,
    ) -> Result<(), SessionRefusal> {
        let shard = self
            .shard(id)
            .and_then(|s| s.read().ok())
            .ok_or(SessionRefusal::Unknown)?;
        let e = shard.get(id).ok_or(SessionRefusal::Unknown)?;
        if now - e.last_used.load(Ordering::Relaxed) > self.idle_secs {
            return Err(SessionRefusal::Unknown);
        }
        if e.agent != agent || e.upstream != upstream {
            return Err(SessionRefusal::NotYours);
        }
        e.last_used.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets a session (after the client deleted it).
    pub fn close(&self, id: &str) {
        if let Some(Ok(mut shard)) = self.shard(id).map(RwLock::write)
            && shard.remove(id).is_some()
        {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Drops sessions idle for longer than the idle limit.
    pub fn sweep(&self, now: i64) {
        for shard in &self.shards {
            if let Ok(mut s) = shard.write() {
                let before = s.len();
                s.retain(|_, e| now - e.last_used.load(Ordering::Relaxed) <= self.idle_secs);
                self.len.fetch_sub(before - s.len(), Ordering::Relaxed);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bound_to_agent_and_upstream() {
        let s = Sessions::new(10, 60);
        assert!(s.open("s1", "alice-bot", "crm", 100));
        assert_eq!(s.check("s1", "alice-bot", "crm", 110), Ok(()));
        assert_eq!(
            s.check("s1", "mallory", "crm", 110),
            Err(SessionRefusal::NotYours)
        );
        assert_eq!(
            s.check("s1", "alice-bot", "mail", 110),
            Err(SessionRefusal::NotYours)
        );
        assert_eq!(
            s.check("nope", "alice-bot", "crm", 110),
            Err(SessionRefusal::Unknown)
        );
        s.close("s1");
        assert_eq!(
            s.check("s1", "alice-bot", "crm", 110),
            Err(SessionRefusal::Unknown)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn idle_sessions_expire_and_the_table_is_bounded() {
        let s = Sessions::new(2, 60);
        assert!(s.open("a", "x", "crm", 0));
        assert!(s.open("b", "x", "crm", 0));
        assert!(!s.open("c", "x", "crm", 30), "full");
        assert_eq!(s.check("a", "x", "crm", 61), Err(SessionRefusal::Unknown));
        assert!(s.open("c", "x", "crm", 100), "idle ones swept to make room");
        assert_eq!(s.len(), 1);
    }
}
