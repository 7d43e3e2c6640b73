//! Rate limits and blast-radius caps on the decision path (HC-2): token buckets and
//! sliding-window caps, per agent, task, agent+tool or delegation tree (`[[limits]]`).
//!
//! Only calls the policy allowed are counted, and a call is counted against every matching
//! limit or none: if one limit refuses, what the others took is given back. A denial names
//! the limit and when it resets. State is sharded (16 locks, by key hash), held for a few
//! arithmetic operations; time is `tokio::time::Instant`, so tests control it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;
use warden_config::{LimitConfig, LimitKind, LimitScope};

const SHARDS: usize = 16;
/// Sub-buckets per window of a cap (its time resolution: window / 60).
const SLOTS: u64 = 60;

/// A refusal: which limit, how far, and when it resets.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub limit: String,
    pub used: f64,
    pub max: f64,
    pub window_secs: u64,
    /// From now until the call would fit.
    pub resets_in: Duration,
}

impl Exceeded {
    pub fn message(&self) -> String {
        format!(
            "limit `{}` reached ({} of {} per {} s); resets in {} s",
            self.limit,
            self.used,
            self.max,
            self.window_secs,
            self.resets_in.as_secs().max(1)
        )
    }
}

/// Who is calling what, for keying the limits.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub agent: &'a str,
    pub task: &'a str,
    /// The root agent of the delegation (the agent itself when not delegated).
    pub tree: &'a str,
    pub resource: &'a str,
    pub arguments: Option<&'a Map<String, Value>>,
}

#[derive(Debug)]
enum State {
    Bucket { tokens: f64, at: Instant },
    Window { slots: Vec<(u64, f64)> },
}

/// The limits in force.
#[derive(Debug)]
pub struct Limits {
    rules: Vec<LimitConfig>,
    origin: Instant,
    shards: Vec<Mutex<HashMap<(usize, String), State>>>,
}

/// `*` matches any run of characters. Runs on every decision: no allocation.
pub fn glob(pattern: &str, s: &str) -> bool {
    let Some((head, tail)) = pattern.split_once('*') else {
        return pattern == s;
    };
    // Between the first and the last `*`: the parts that must appear, in order.
    let (middle, last) = tail.rsplit_once('*').unwrap_or(("", tail));
    let Some(mut rest) = s.strip_prefix(head).and_then(|r| r.strip_suffix(last)) else {
        return false;
    };
    for p in middle.split('*').filter(|p| !p.is_empty()) {
        match rest.find(p) {
            Some(i) => rest = rest.get(i + p.len()..).unwrap_or(""),
            None => return false,
        }
    }
    true
}

impl Limits {
    pub fn new(rules: Vec<LimitConfig>) -> Self {
        Self {
            rules,
            origin: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn shard(&self, key: &(usize, String)) -> &Mutex<HashMap<(usize, String), State>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let i = usize::try_from(h.finish() % SHARDS as u64).unwrap_or(0);
        // SHARDS entries always exist.
        self.shards.get(i).unwrap_or_else(|| unreachable!())
    }

    fn key(i: usize, rule: &LimitConfig, who: &Subject<'_>) -> (usize, String) {
        (
            i,
            match rule.per {
                LimitScope::Agent => who.agent.to_owned(),
                LimitScope::Task => who.task.to_owned(),
                LimitScope::Tool => format!("{}\u{0}{}", who.agent, who.resource),
                LimitScope::Tree => who.tree.to_owned(),
            },
        )
    }

    /// How much of the limits matching this call is used already: percent of the fullest
    /// (0..=100; 0 when none match). Takes nothing (`context.limit_used` for the policy).
    pub fn used_percent(&self, who: &Subject<'_>) -> i64 {
        if self.rules.is_empty() {
            return 0;
        }
        let now = Instant::now();
        let mut fullest: f64 = 0.0;
        for (i, rule) in self.rules.iter().enumerate() {
            if !glob(&rule.matches, who.resource) || rule.max <= 0.0 {
                continue;
            }
            let key = Self::key(i, rule, who);
            let map = self
                .shard(&key)
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let used = match map.get(&key) {
                None => 0.0,
                Some(State::Bucket { tokens, at }) => {
                    let per_sec = rule.max / rule.window_secs as f64;
                    let now_tokens =
                        (tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(rule.max);
                    rule.max - now_tokens
                }
                Some(State::Window { slots }) => {
                    let current = self.slot(rule, now);
                    slots
                        .iter()
                        .filter(|(s, _)| s + SLOTS > current)
                        .map(|(_, a)| a)
                        .sum()
                }
            };
            fullest = fullest.max(used / rule.max);
        }
        // In 0..=100 by the clamp; the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, reason = "clamped to 0..=100")]
        let pct = (fullest * 100.0).floor().clamp(0.0, 100.0) as i64;
        pct
    }

    /// Counts one call against every matching limit, or refuses it (taking nothing).
    pub fn take(&self, who: &Subject<'_>) -> Result<(), Exceeded> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut taken: Vec<((usize, String), f64)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !glob(&rule.matches, who.resource) {
                continue;
            }
            let amount = match (&rule.sum, who.arguments) {
                (None, _) => 1.0,
                (Some(arg), args) => match args.and_then(|a| a.get(arg)).and_then(Value::as_f64) {
                    Some(v) if v >= 0.0 => v,
                    _ => {
                        self.give_back(&taken);
                        return Err(Exceeded {
                            limit: rule.name.clone(),
                            used: 0.0,
                            max: rule.max,
                            window_secs: rule.window_secs,
                            resets_in: Duration::ZERO,
                        });
                    }
                },
            };
            let key = Self::key(i, rule, who);
            let result = {
                let mut map = self
                    .shard(&key)
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // The key is cloned into the map only the first time it is seen.
                if let Some(state) = map.get_mut(&key) {
                    self.take_one(rule, state, amount, now)
                } else {
                    let mut state = match rule.kind {
                        LimitKind::Rate => State::Bucket {
                            tokens: rule.max,
                            at: now,
                        },
                        LimitKind::Cap => State::Window { slots: Vec::new() },
                    };
                    let r = self.take_one(rule, &mut state, amount, now);
                    map.insert(key.clone(), state);
                    r
                }
            };
            match result {
                Ok(()) => taken.push((key, amount)),
                Err(e) => {
                    self.give_back(&taken);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn slot_len(rule: &LimitConfig) -> Duration {
        Duration::from_secs(rule.window_secs) / u32::try_from(SLOTS).unwrap_or(60)
    }

    fn slot(&self, rule: &LimitConfig, now: Instant) -> u64 {
        let len = Self::slot_len(rule).as_nanos().max(1);
        u64::try_from(now.duration_since(self.origin).as_nanos() / len).unwrap_or(u64::MAX)
    }

    fn take_one(
        &self,
        rule: &LimitConfig,
        state: &mut State,
        amount: f64,
        now: Instant,
    ) -> Result<(), Exceeded> {
        match state {
            State::Bucket { tokens, at } => {
                let per_sec = rule.max / rule.window_secs as f64;
                *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(rule.max);
                *at = now;
                if *tokens >= amount {
                    *tokens -= amount;
                    return Ok(());
                }
                Err(Exceeded {
                    limit: rule.name.clone(),
                    used: (rule.max - *tokens).round(),
                    max: rule.max,
                    window_secs: rule.window_secs,
                    // An argument may be any size: never a panic, at worst "a long time".
                    resets_in: Duration::try_from_secs_f64((amount - *tokens) / per_sec.max(1e-9))
                        .unwrap_or(Duration::MAX),
                })
            }
            State::Window { slots } => {
                let current = self.slot(rule, now);
                slots.retain(|(s, _)| s + SLOTS > current);
                let used: f64 = slots.iter().map(|(_, a)| a).sum();
                if used + amount <= rule.max {
                    match slots.last_mut() {
                        Some((s, a)) if *s == current => *a += amount,
                        _ => slots.push((current, amount)),
                    }
                    return Ok(());
                }
                // The call fits once enough of the oldest slots have left the window.
                let mut left = used;
                let mut fits_at = None;
                for (s, a) in slots.iter() {
                    left -= a;
                    if left + amount <= rule.max {
                        fits_at = Some(s + SLOTS);
                        break;
                    }
                }
                let resets_in = fits_at.map_or(Duration::from_secs(rule.window_secs), |slot| {
                    let len = u64::try_from(Self::slot_len(rule).as_nanos()).unwrap_or(u64::MAX);
                    let since_origin = Duration::from_nanos(len.saturating_mul(slot));
                    self.origin
                        .checked_add(since_origin)
                        .map_or(Duration::MAX, |at| at.saturating_duration_since(now))
                });
                Err(Exceeded {
                    limit: rule.name.clone(),
                    used,
                    max: rule.max,
                    window_secs: rule.window_secs,
                    resets_in,
                })
            }
        }
    }

    fn give_back(&self, taken: &[((usize, String), f64)]) {
        for (key, amount) in taken {
            let mut map = self
                .shard(key)
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match map.get_mut(key) {
                Some(State::Bucket { tokens, .. }) => *tokens += amount,
                Some(State::Window { slots }) => {
                    if let Some((_, a)) = slots.last_mut() {
                        *a -= amount;
                    }
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn rule(name: &str, kind: LimitKind, per: LimitScope, max: f64, window: u64) -> LimitConfig {
        LimitConfig {
            name: name.into(),
            kind,
            matches: "crm/delete_*".into(),
            per,
            max,
            window_secs: window,
            sum: None,
        }
    }

    fn who<'a>(agent: &'a str, resource: &'a str) -> Subject<'a> {
        Subject {
            agent,
            task: "t",
            tree: "root",
            resource,
            arguments: None,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", "a/b"));
        assert!(glob("crm/delete_*", "crm/delete_record"));
        assert!(!glob("crm/delete_*", "crm/read_contact"));
        assert!(glob("*/delete_*", "mail/delete_all"));
        assert!(glob("finance/transfer_funds", "finance/transfer_funds"));
        assert!(!glob("finance/transfer", "finance/transfer_funds"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cap_allows_up_to_max_in_any_window_and_says_when_it_resets() {
        let l = Limits::new(vec![rule(
            "deletes",
            LimitKind::Cap,
            LimitScope::Agent,
            3.0,
            3600,
        )]);
        let a = who("a", "crm/delete_record");
        // cap - 1, cap: allowed; cap + 1: refused.
        assert!(l.take(&a).is_ok());
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(l.take(&a).is_ok());
        assert!(l.take(&a).is_ok());
        let e = l.take(&a).unwrap_err();
        assert_eq!((e.limit.as_str(), e.used, e.max), ("deletes", 3.0, 3.0));
        // The first call leaves the window 3600 s after it was made: 3000 s from now.
        let secs = e.resets_in.as_secs();
        assert!((2940..=3000).contains(&secs), "{secs}");
        assert!(e.message().contains("resets in"));
        // Other agents and other tools are not affected.
        assert!(l.take(&who("b", "crm/delete_record")).is_ok());
        assert!(l.take(&who("a", "crm/read_contact")).is_ok());
        // Once the window has moved past the first call, one more fits.
        tokio::time::advance(Duration::from_secs(3001)).await;
        assert!(l.take(&a).is_ok());
        assert!(l.take(&a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_share_used_is_visible_before_a_call_is_counted() {
        let l = Limits::new(vec![
            rule("deletes", LimitKind::Cap, LimitScope::Agent, 4.0, 3600),
            rule("burst", LimitKind::Rate, LimitScope::Tool, 10.0, 10),
        ]);
        let a = who("a", "crm/delete_record");
        assert_eq!(l.used_percent(&a), 0);
        assert!(l.take(&a).is_ok());
        // The fullest limit: 1 of 4 (25 %) beats 1 of 10 (10 %).
        assert_eq!(l.used_percent(&a), 25);
        assert!(l.take(&a).is_ok());
        assert!(l.take(&a).is_ok());
        assert_eq!(l.used_percent(&a), 75);
        // Looking takes nothing.
        assert!(l.take(&a).is_ok());
        assert_eq!(l.used_percent(&a), 100);
        assert!(l.take(&a).is_err());
        // Another agent, and calls no limit matches.
        assert_eq!(l.used_percent(&who("b", "crm/delete_record")), 0);
        assert_eq!(l.used_percent(&who("a", "crm/read_contact")), 0);
        assert_eq!(Limits::new(Vec::new()).used_percent(&a), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_bucket_refills_at_its_rate() {
        let l = Limits::new(vec![rule(
            "burst",
            LimitKind::Rate,
            LimitScope::Tool,
            2.0,
            10,
        )]);
        let a = who("a", "crm/delete_record");
        assert!(l.take(&a).is_ok());
        assert!(l.take(&a).is_ok());
        let e = l.take(&a).unwrap_err();
        assert_eq!(e.resets_in.as_secs(), 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(l.take(&a).is_ok());
        assert!(l.take(&a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn sums_per_delegation_tree_and_all_or_nothing() {
        let mut transfers = rule(
            "transfers",
            LimitKind::Cap,
            LimitScope::Tree,
            10_000.0,
            86_400,
        );
        transfers.matches = "finance/*".into();
        transfers.sum = Some("amount".into());
        let mut calls = rule("calls", LimitKind::Cap, LimitScope::Agent, 100.0, 60);
        calls.matches = "*".into();
        let l = Limits::new(vec![calls, transfers]);
        let args = |n: i64| {
            let mut m = Map::new();
            m.insert("amount".into(), n.into());
            m
        };
        let (a6, a4, a1) = (args(6000), args(4000), args(1));
        let pay = |agent: &'static str, a: &Map<String, Value>| {
            l.take(&Subject {
                agent,
                task: "t",
                tree: "root",
                resource: "finance/transfer_funds",
                arguments: Some(a),
            })
        };
        assert!(pay("child-1", &a6).is_ok());
        // Another agent of the same tree: the tree's sum counts.
        assert!(pay("child-2", &a4).is_ok());
        let e = pay("child-2", &a1).unwrap_err();
        assert_eq!(e.limit, "transfers");
        // The refused call took nothing from the other limit either: 2 calls counted, not 3.
        let mut m = l.shards.iter().flat_map(|s| {
            s.lock()
                .unwrap()
                .iter()
                .filter_map(|((i, k), st)| match st {
                    State::Window { slots } if *i == 0 && k == "child-2" => {
                        Some(slots.iter().map(|(_, a)| a).sum::<f64>())
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(m.next(), Some(1.0));
        // Without the summed argument the cap cannot be enforced: refused.
        assert!(pay("child-3", &Map::new()).is_err());
        // An absurd amount is refused, not a crash.
        let mut huge_rate = rule("huge", LimitKind::Rate, LimitScope::Agent, 10.0, 10);
        huge_rate.sum = Some("amount".into());
        let l = Limits::new(vec![huge_rate]);
        let mut m = Map::new();
        m.insert("amount".into(), Value::from(1e308));
        let e = l
            .take(&Subject {
                agent: "a",
                task: "t",
                tree: "a",
                resource: "crm/delete_record",
                arguments: Some(&m),
            })
            .unwrap_err();
        assert_eq!(e.resets_in, Duration::MAX);
    }
}
