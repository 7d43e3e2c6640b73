//! Circuit breakers (HC-3): an agent whose calls on one tool keep failing upstream, or keep
//! being denied, is stopped on that tool for a while; one whose calls keep being denied on
//! any tools is stopped on all of them. A breaker is *closed* (calls decided as usual),
//! *open* (calls refused with `circuit_open` before any decision or forwarding, until
//! `open_secs` have passed) or *half-open* (one probe call is let through: its success
//! closes the breaker, its failure or denial opens it again for twice as long). Each time a
//! breaker of an agent opens from closed is an *incident*; `demote_after` incidents within
//! `demote_window_secs` demote the agent one autonomy level, which only a person undoes
//! (docs/breakers.md).
//!
//! On the hot path: with no breaker counting anything, [`Breakers::admit`] and
//! [`Breakers::record`] read one atomic; otherwise a lookup in one of 16 shards keyed by a
//! hash of agent and tool, no allocation. Circuits are created only on a failure or a
//! denial, and forgotten once closed and idle. Time is `tokio::time::Instant`, so tests
//! control it.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use warden_config::BreakersConfig;

const SHARDS: usize = 16;
/// Circuits kept at most; past this, idle ones are swept and new per-tool circuits are not
/// created (the agent-wide ones still count), so made-up tool names cannot exhaust memory.
const MAX_CIRCUITS: usize = 100_000;
/// The scope of an agent's breaker over all its calls.
pub const ALL_TOOLS: &str = "*";

/// What opened a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Failures,
    Denials,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failures => "failures",
            Self::Denials => "denials",
        }
    }
}

/// What happened to one call, as a breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The decision allowed it.
    Allowed,
    /// The decision refused it.
    Denied,
    /// The upstream answered it.
    Succeeded,
    /// The upstream did not answer, or answered with an HTTP error.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { since: Instant },
}

#[derive(Debug)]
struct Circuit {
    agent: Box<str>,
    scope: Box<str>,
    phase: Phase,
    /// Consecutive upstream failures.
    failures: u32,
    /// Times of the latest denials within the window (at most the threshold).
    denials: VecDeque<Instant>,
    cause: Cause,
    /// The count that opened it.
    count: u32,
    /// How long it stays open next time a probe fails.
    open_for: Duration,
    /// When it last opened (Unix ms), for listings.
    opened_at_ms: i64,
}

/// A breaker that opened: what the gateway audits, and whether it must demote the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub agent: String,
    /// `upstream/tool`, or [`ALL_TOOLS`].
    pub scope: String,
    pub cause: Cause,
    pub count: u32,
    pub open_for: Duration,
    /// A failed probe opened it again: not a new incident.
    pub reopened: bool,
    /// The agent's incidents within the demotion window, this one included.
    pub incidents: u32,
    /// Enough incidents: lower the agent's autonomy one level.
    pub demote: bool,
}

/// A call refused by an open breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub scope: String,
    pub cause: Cause,
    pub count: u32,
    /// Until the next probe may go through.
    pub retry_in: Duration,
    /// A probe is under way (half-open).
    pub probing: bool,
}

impl Refused {
    pub fn message(&self, agent: &str) -> String {
        let on = if self.scope == ALL_TOOLS {
            "all tools".to_owned()
        } else {
            self.scope.clone()
        };
        let why = match self.cause {
            Cause::Failures => format!("{} consecutive upstream failures", self.count),
            Cause::Denials => format!("{} denials", self.count),
        };
        let when = if self.probing {
            "a probe call is under way".to_owned()
        } else {
            format!("retry in {} s", self.retry_in.as_secs().max(1))
        };
        format!("circuit breaker open for agent {agent} on {on} after {why}; {when}")
    }
}

/// One circuit, as `warden breakers list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerView {
    pub agent: String,
    pub scope: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub cause: Option<Cause>,
    pub count: u32,
    pub failures: u32,
    pub denials: u32,
    pub opened_at_ms: Option<i64>,
    /// Seconds until a probe may go through (open only).
    pub retry_in_secs: Option<u64>,
}

/// The agent's incidents in the demotion window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentView {
    pub agent: String,
    pub incidents: u32,
}

type Shard = HashMap<u64, Vec<Circuit>>;

/// Every agent's breakers.
#[derive(Debug)]
pub struct Breakers {
    cfg: BreakersConfig,
    hasher: std::collections::hash_map::RandomState,
    circuits: AtomicUsize,
    shards: Vec<Mutex<Shard>>,
    /// Per agent: when its breakers opened from closed, within the demotion window.
    incidents: Mutex<HashMap<String, Vec<Instant>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Breakers {
    pub fn new(cfg: BreakersConfig) -> Self {
        Self {
            cfg,
            hasher: std::collections::hash_map::RandomState::new(),
            circuits: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            incidents: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, agent: &str, scope: &str) -> (u64, &Mutex<Shard>) {
        let h = self.hasher.hash_one((agent, scope));
        let i = usize::try_from(h % SHARDS as u64).unwrap_or(0);
        // SHARDS entries always exist.
        (h, self.shards.get(i).unwrap_or_else(|| unreachable!()))
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.cfg.window_secs)
    }

    fn first_open(&self) -> Duration {
        Duration::from_secs(self.cfg.open_secs)
    }

    /// May this call be decided? `Err` when a breaker of the agent on this tool, or on all
    /// its tools, is open (or half-open with its probe under way). Letting a call through
    /// a half-open breaker makes it the probe.
    pub fn admit(&self, agent: &str, resource: &str) -> Result<(), Refused> {
        if !self.cfg.enabled || self.circuits.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let now = Instant::now();
        for scope in [ALL_TOOLS, resource] {
            let (h, shard) = self.key(agent, scope);
            let mut map = lock(shard);
            let Some(c) = find(&mut map, h, agent, scope) else {
                continue;
            };
            let refused = |c: &Circuit, retry_in: Duration, probing: bool| Refused {
                scope: scope.to_owned(),
                cause: c.cause,
                count: c.count,
                retry_in,
                probing,
            };
            match c.phase {
                Phase::Closed => {}
                Phase::Open { until } if now < until => {
                    return Err(refused(c, until - now, false));
                }
                Phase::HalfOpen { since } if now < since + c.open_for.min(self.first_open()) => {
                    let retry = since + c.open_for.min(self.first_open()) - now;
                    return Err(refused(c, retry, true));
                }
                // Open long enough, or a probe that never reported back: this call probes.
                Phase::Open { .. } | Phase::HalfOpen { .. } => {
                    c.phase = Phase::HalfOpen { since: now };
                }
            }
        }
        Ok(())
    }

    /// Counts what happened to one call; returns the breakers it opened.
    pub fn record(&self, agent: &str, resource: &str, event: Event) -> Vec<Trip> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        let counting = matches!(event, Event::Denied | Event::Failed);
        if !counting && self.circuits.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let now = Instant::now();
        let mut trips = Vec::new();
        let scopes: &[&str] = match event {
            Event::Denied | Event::Allowed => &[resource, ALL_TOOLS],
            Event::Failed | Event::Succeeded => &[resource],
        };
        for scope in scopes {
            if let Some((cause, count, reopened, open_for)) = self.count(agent, scope, event, now) {
                let (incidents, demote) = if reopened {
                    (self.incidents_of(agent, now), false)
                } else {
                    self.incident(agent, now)
                };
                trips.push(Trip {
                    agent: agent.to_owned(),
                    scope: (*scope).to_owned(),
                    cause,
                    count,
                    open_for,
                    reopened,
                    incidents,
                    demote,
                });
            }
        }
        trips
    }

    /// Applies `event` to one circuit; `Some` when it opened.
    fn count(
        &self,
        agent: &str,
        scope: &str,
        event: Event,
        now: Instant,
    ) -> Option<(Cause, u32, bool, Duration)> {
        let (h, shard) = self.key(agent, scope);
        let mut map = lock(shard);
        let all = scope == ALL_TOOLS;
        if find(&mut map, h, agent, scope).is_none() {
            let creates = match event {
                Event::Denied => true,
                Event::Failed => !all,
                Event::Allowed | Event::Succeeded => false,
            };
            if !creates || !self.room(all) {
                return None;
            }
            map.entry(h).or_default().push(Circuit {
                agent: agent.into(),
                scope: scope.into(),
                phase: Phase::Closed,
                failures: 0,
                denials: VecDeque::new(),
                cause: Cause::Denials,
                count: 0,
                open_for: self.first_open(),
                opened_at_ms: 0,
            });
            self.circuits.fetch_add(1, Ordering::Relaxed);
        }
        let window = self.window();
        let threshold_denials = if all {
            self.cfg.agent_denials
        } else {
            self.cfg.denials
        };
        let c = find(&mut map, h, agent, scope)?;
        let opened = match (c.phase, event) {
            (Phase::Open { .. }, _) => None,
            (Phase::HalfOpen { .. }, Event::Denied | Event::Failed) => {
                // The probe failed: open again, for twice as long.
                let max = Duration::from_secs(self.cfg.max_open_secs);
                c.open_for = (c.open_for * 2).min(max);
                c.phase = Phase::Open {
                    until: now + c.open_for,
                };
                c.opened_at_ms = crate::audit::now_ms();
                Some((c.cause, c.count, true, c.open_for))
            }
            (Phase::HalfOpen { .. }, Event::Succeeded)
            | (Phase::HalfOpen { .. }, Event::Allowed)
                if event == Event::Succeeded || c.cause == Cause::Denials =>
            {
                c.phase = Phase::Closed;
                c.failures = 0;
                c.denials.clear();
                c.open_for = self.first_open();
                None
            }
            (Phase::HalfOpen { .. }, _) => None,
            (Phase::Closed, Event::Failed) => {
                c.failures += 1;
                (c.failures >= self.cfg.failures).then(|| {
                    let count = c.failures;
                    self.open(c, Cause::Failures, count, now)
                })
            }
            (Phase::Closed, Event::Succeeded) => {
                c.failures = 0;
                None
            }
            (Phase::Closed, Event::Denied) => {
                while c.denials.front().is_some_and(|t| *t + window <= now) {
                    c.denials.pop_front();
                }
                c.denials.push_back(now);
                let n = u32::try_from(c.denials.len()).unwrap_or(u32::MAX);
                (n >= threshold_denials).then(|| self.open(c, Cause::Denials, n, now))
            }
            (Phase::Closed, Event::Allowed) => None,
        };
        // A closed circuit with nothing counted is forgotten.
        let idle = c.phase == Phase::Closed
            && c.failures == 0
            && c.denials.back().is_none_or(|t| *t + window <= now);
        if idle {
            forget(&mut map, h, agent, scope);
            self.circuits.fetch_sub(1, Ordering::Relaxed);
        }
        opened
    }

    fn open(
        &self,
        c: &mut Circuit,
        cause: Cause,
        count: u32,
        now: Instant,
    ) -> (Cause, u32, bool, Duration) {
        c.cause = cause;
        c.count = count;
        c.failures = 0;
        c.denials.clear();
        c.open_for = self.first_open();
        c.phase = Phase::Open {
            until: now + c.open_for,
        };
        c.opened_at_ms = crate::audit::now_ms();
        (cause, count, false, c.open_for)
    }

    /// Is there room for one more circuit? Sweeps idle ones when full; agent-wide circuits
    /// are always made.
    fn room(&self, all_tools: bool) -> bool {
        if self.circuits.load(Ordering::Relaxed) < MAX_CIRCUITS {
            return true;
        }
        self.sweep();
        all_tools || self.circuits.load(Ordering::Relaxed) < MAX_CIRCUITS
    }

    /// Forgets every closed circuit whose counts have left the window.
    fn sweep(&self) {
        let now = Instant::now();
        let window = self.window();
        for shard in &self.shards {
            // Another shard may be locked by the caller: skip it rather than deadlock.
            let Ok(mut map) = shard.try_lock() else {
                continue;
            };
            let mut removed = 0;
            map.retain(|_, cs| {
                let before = cs.len();
                cs.retain(|c| {
                    !(c.phase == Phase::Closed
                        && c.denials.back().is_none_or(|t| *t + window <= now))
                });
                removed += before - cs.len();
                !cs.is_empty()
            });
            self.circuits.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    /// Counts an incident of `agent`: its incidents in the window (this one included), and
    /// whether they demote it (the count then starts again).
    fn incident(&self, agent: &str, now: Instant) -> (u32, bool) {
        let window = Duration::from_secs(self.cfg.demote_window_secs);
        let mut all = lock(&self.incidents);
        let list = all.entry(agent.to_owned()).or_default();
        list.retain(|t| *t + window > now);
        list.push(now);
        let n = u32::try_from(list.len()).unwrap_or(u32::MAX);
        let demote = self.cfg.demote_after > 0 && n >= self.cfg.demote_after;
        if demote {
            all.remove(agent);
        }
        (n, demote)
    }

    fn incidents_of(&self, agent: &str, now: Instant) -> u32 {
        let window = Duration::from_secs(self.cfg.demote_window_secs);
        lock(&self.incidents).get(agent).map_or(0, |l| {
            u32::try_from(l.iter().filter(|t| **t + window > now).count()).unwrap_or(u32::MAX)
        })
    }

    /// Every circuit counting something, and every agent's incidents.
    pub fn list(&self) -> (Vec<BreakerView>, Vec<IncidentView>) {
        let now = Instant::now();
        let window = self.window();
        let mut out: Vec<BreakerView> = self
            .shards
            .iter()
            .flat_map(|s| {
                lock(s)
                    .values()
                    .flatten()
                    .map(|c| {
                        let (state, retry) = match c.phase {
                            Phase::Closed => ("closed", None),
                            Phase::Open { until } => {
                                ("open", Some(until.saturating_duration_since(now).as_secs()))
                            }
                            Phase::HalfOpen { .. } => ("half_open", None),
                        };
                        let tripped = state != "closed";
                        BreakerView {
                            agent: c.agent.to_string(),
                            scope: c.scope.to_string(),
                            state,
                            cause: tripped.then_some(c.cause),
                            count: if tripped { c.count } else { 0 },
                            failures: c.failures,
                            denials: u32::try_from(
                                c.denials.iter().filter(|t| **t + window > now).count(),
                            )
                            .unwrap_or(u32::MAX),
                            opened_at_ms: tripped.then_some(c.opened_at_ms),
                            retry_in_secs: retry,
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| (&a.agent, &a.scope).cmp(&(&b.agent, &b.scope)));
        let demote_window = Duration::from_secs(self.cfg.demote_window_secs);
        let mut incidents: Vec<IncidentView> = lock(&self.incidents)
            .iter()
            .map(|(a, l)| IncidentView {
                agent: a.clone(),
                incidents: u32::try_from(l.iter().filter(|t| **t + demote_window > now).count())
                    .unwrap_or(u32::MAX),
            })
            .filter(|i| i.incidents > 0)
            .collect();
        incidents.sort_by(|a, b| a.agent.cmp(&b.agent));
        (out, incidents)
    }

    /// Closes the agent's breakers (one scope, or all) and forgets its incidents: a person
    /// decided it may go on. Returns how many circuits were closed.
    pub fn reset(&self, agent: &str, scope: Option<&str>) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = lock(shard);
            map.retain(|_, cs| {
                let before = cs.len();
                cs.retain(|c| !(&*c.agent == agent && scope.is_none_or(|s| &*c.scope == s)));
                removed += before - cs.len();
                !cs.is_empty()
            });
        }
        self.circuits.fetch_sub(removed, Ordering::Relaxed);
        if scope.is_none() {
            lock(&self.incidents).remove(agent);
        }
        removed
    }
}

/// Who breakers act as in the audit trail.
pub const ACTOR: &str = "warden/breakers";

/// Does a refusal with this reason count as a denial? Not when the breaker itself refused,
/// nor when Warden (not the agent) is the cause: a kill, a decision error, an approval
/// nobody answered.
pub fn counts_as_denial(reason_id: &str) -> bool {
    !matches!(
        reason_id,
        "circuit_open"
            | "agent_killed"
            | "decision_error"
            | "approval_timeout"
            | "approval_expired"
            | "approval_unavailable"
    )
}

fn find<'m>(map: &'m mut Shard, h: u64, agent: &str, scope: &str) -> Option<&'m mut Circuit> {
    map.get_mut(&h)?
        .iter_mut()
        .find(|c| &*c.agent == agent && &*c.scope == scope)
}

fn forget(map: &mut Shard, h: u64, agent: &str, scope: &str) {
    if let Some(cs) = map.get_mut(&h) {
        cs.retain(|c| !(&*c.agent == agent && &*c.scope == scope));
        if cs.is_empty() {
            map.remove(&h);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn breakers() -> Breakers {
        Breakers::new(BreakersConfig {
            failures: 3,
            denials: 4,
            agent_denials: 6,
            window_secs: 60,
            open_secs: 10,
            max_open_secs: 30,
            demote_after: 2,
            ..BreakersConfig::default()
        })
    }

    const TOOL: &str = "crm/read_contact";

    #[tokio::test(start_paused = true)]
    async fn failures_open_then_a_probe_closes_or_reopens_for_longer() {
        let b = breakers();
        assert!(b.admit("a", TOOL).is_ok());
        // Failures must be consecutive: a success in between starts again.
        assert!(b.record("a", TOOL, Event::Failed).is_empty());
        assert!(b.record("a", TOOL, Event::Failed).is_empty());
        assert!(b.record("a", TOOL, Event::Succeeded).is_empty());
        assert!(b.record("a", TOOL, Event::Failed).is_empty());
        assert!(b.record("a", TOOL, Event::Failed).is_empty());
        let trips = b.record("a", TOOL, Event::Failed);
        assert_eq!(trips.len(), 1);
        let t = &trips[0];
        assert_eq!(
            (t.cause, t.count, t.reopened, t.incidents, t.demote),
            (Cause::Failures, 3, false, 1, false)
        );
        assert_eq!(t.open_for, Duration::from_secs(10));
        // Open: refused, saying when to retry; other tools and agents are not affected.
        let e = b.admit("a", TOOL).unwrap_err();
        assert_eq!(
            (e.cause, e.count, e.retry_in.as_secs(), e.probing),
            (Cause::Failures, 3, 10, false)
        );
        assert!(e.message("a").contains("3 consecutive upstream failures"));
        assert!(b.admit("a", "crm/other").is_ok());
        assert!(b.admit("b", TOOL).is_ok());
        // After open_secs one probe goes through; others wait for it.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.admit("a", TOOL).is_ok());
        assert!(b.admit("a", TOOL).unwrap_err().probing);
        // The probe fails: open again, twice as long, not a new incident.
        let trips = b.record("a", TOOL, Event::Failed);
        assert_eq!(
            (
                trips[0].reopened,
                trips[0].open_for.as_secs(),
                trips[0].incidents
            ),
            (true, 20, 1)
        );
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(b.admit("a", TOOL).is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.admit("a", TOOL).is_ok());
        // The probe succeeds: closed, and forgotten.
        assert!(b.record("a", TOOL, Event::Succeeded).is_empty());
        assert!(b.admit("a", TOOL).is_ok());
        assert!(b.admit("a", TOOL).is_ok());
        assert_eq!(b.circuits.load(Ordering::Relaxed), 0);
        assert!(b.list().0.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn denials_within_the_window_open_per_tool_and_across_tools() {
        let b = breakers();
        // Denials that leave the window do not count.
        for _ in 0..3 {
            assert!(b.record("a", TOOL, Event::Denied).is_empty());
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        for _ in 0..3 {
            assert!(b.record("a", TOOL, Event::Denied).is_empty());
        }
        let trips = b.record("a", TOOL, Event::Denied);
        assert_eq!(trips.len(), 1);
        assert_eq!(
            (trips[0].scope.as_str(), trips[0].cause, trips[0].count),
            (TOOL, Cause::Denials, 4)
        );
        // A denial probe keeps it open; an allowed probe closes it.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.admit("a", TOOL).is_ok());
        assert!(b.record("a", TOOL, Event::Allowed).is_empty());
        assert!(b.admit("a", TOOL).is_ok());
        // Across tools: six denials on six tools open the agent-wide breaker.
        let mut trips = Vec::new();
        for i in 0..6 {
            trips.extend(b.record("c", &format!("crm/t{i}"), Event::Denied));
        }
        assert_eq!(trips.len(), 1);
        assert_eq!(trips[0].scope, ALL_TOOLS);
        let e = b.admit("c", "mail/send").unwrap_err();
        assert_eq!(e.scope, ALL_TOOLS);
        assert!(e.message("c").contains("on all tools after 6 denials"));
        let (views, incidents) = b.list();
        assert!(
            views
                .iter()
                .any(|v| v.agent == "c" && v.scope == ALL_TOOLS && v.state == "open")
        );
        assert_eq!(
            incidents.iter().find(|i| i.agent == "c").unwrap().incidents,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_incidents_demote_and_a_reset_forgets_them() {
        let b = breakers();
        let trip = |b: &Breakers, tool: &str| {
            (0..3)
                .flat_map(|_| b.record("a", tool, Event::Failed))
                .collect::<Vec<_>>()
        };
        let first = trip(&b, "crm/one");
        assert_eq!((first[0].incidents, first[0].demote), (1, false));
        let second = trip(&b, "crm/two");
        assert_eq!((second[0].incidents, second[0].demote), (2, true));
        // The count starts again after a demotion.
        let third = trip(&b, "crm/three");
        assert_eq!((third[0].incidents, third[0].demote), (1, false));
        // A person resets: every breaker of the agent closes and its incidents are gone.
        assert_eq!(b.reset("a", None), 3);
        assert!(b.admit("a", "crm/one").is_ok());
        assert!(b.list().1.is_empty());
        // Demotion can be turned off.
        let never = Breakers::new(BreakersConfig {
            failures: 1,
            demote_after: 0,
            ..BreakersConfig::default()
        });
        for i in 0..5 {
            assert!(!never.record("a", &format!("t{i}"), Event::Failed)[0].demote);
        }
        // Disabled: nothing counts.
        let off = Breakers::new(BreakersConfig {
            enabled: false,
            failures: 1,
            ..BreakersConfig::default()
        });
        assert!(off.record("a", TOOL, Event::Failed).is_empty());
        assert!(off.admit("a", TOOL).is_ok());
    }
}
