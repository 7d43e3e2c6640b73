//! Warden's behavioural monitor (MO-1; ATF B-3, B-4): what normal looks like for each
//! agent, learned online from the decision stream, and a risk score that rises when an
//! agent stops looking like itself.
//!
//! * A [`Baseline`] per agent: tools and servers, call rates (EWMA and variance per 10 s
//!   and 5 min bucket, per agent and per tool), data volumes in and out, denial and error
//!   rates, hours of activity, tool-to-tool transitions, destinations and delegates. Until
//!   it has enough history ([`Settings::min_operations`] or [`Settings::min_age_ms`]) only
//!   the rule-based detectors speak.
//! * Detectors ([`SignalKind`]): first-seen tool, server and destination; rate and volume
//!   spikes (z-scores over the EWMA); never-seen transitions; off-hours activity; denial
//!   storms, runaway rates and delegation fan-out (rules, also before a baseline); content
//!   injections, after which every other signal weighs double.
//! * A risk score (0–100) per agent: each signal adds its points, the score halves every
//!   [`Settings::half_life_ms`]. Reaching [`Settings::alert_at`] raises an alert, reaching
//!   [`Settings::quarantine_at`] asks for a quarantine, which only [`Monitor::release`]
//!   (a person) clears. While the risk is at or above the alert threshold the baseline
//!   learns nothing: an attack is not taught as normal.
//!
//! Synchronous, no I/O, no clock: every observation carries its time, so tests and the
//! simulator control it. State is sharded by agent (16 mutexes), so agents never contend
//! with each other; an observation that raises nothing allocates nothing.

mod agent;
mod baseline;
mod signal;
mod stats;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

pub use agent::Persisted;
pub use baseline::{Baseline, Profile, ToolProfile, TransitionProfile};
pub use signal::{Signal, SignalKind, Verdict};
pub use stats::{Ewma, Rate};

use agent::AgentState;

const SHARDS: usize = 16;
/// Agents tracked at most (they are registered identities; this bounds memory anyway).
const MAX_AGENTS: usize = 1_000_000;

/// How the monitor judges.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Calls after which a baseline is trusted ...
    pub min_operations: u64,
    /// ... or time since its first call, whichever comes first.
    pub min_age_ms: i64,
    /// The risk score halves in this time.
    pub half_life_ms: f64,
    /// Risk at which an alert is raised.
    pub alert_at: u8,
    /// Risk at which the agent is quarantined; `None`: never automatically.
    pub quarantine_at: Option<u8>,
    /// Calls within 10 s above which any agent is a runaway (rule).
    pub runaway_per_10s: u32,
    /// Denials within 60 s that make a storm (rule).
    pub denial_storm: u32,
    /// Distinct delegates within 10 min above which fan-out is reported (rule; a trusted
    /// baseline lowers it to twice the agent's peak, at least 3).
    pub fan_out: u32,
    /// Deviations above the mean that make a volume spike.
    pub z: f64,
    /// Arguments or results smaller than this are never a volume spike.
    pub min_volume_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_operations: 1_000,
            min_age_ms: 7 * 86_400_000,
            half_life_ms: 900_000.0,
            alert_at: 40,
            quarantine_at: Some(90),
            runaway_per_10s: 50,
            denial_storm: 5,
            fan_out: 10,
            z: 4.0,
            min_volume_bytes: 4_096,
        }
    }
}

/// How the call was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// Refused for something the agent did (not a Warden failure).
    Denied,
}

/// One decided call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub time_ms: i64,
    pub agent: &'a str,
    /// The agent this one acts for, when the token was delegated.
    pub delegator: Option<&'a str>,
    pub server: &'a str,
    /// `server/tool` (or the resource or prompt).
    pub tool: &'a str,
    pub outcome: Outcome,
    /// Size of the arguments.
    pub bytes_out: u64,
    /// Hosts and mail domains the arguments name.
    pub destinations: &'a [&'a str],
    /// The record the call touches (its `id`, `path`, ... argument), if any.
    pub record: Option<&'a str>,
}

/// The answer to a forwarded call: whether the upstream answered, and (when its content
/// was read) how large it was.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    pub time_ms: i64,
    pub agent: &'a str,
    pub tool: &'a str,
    pub kind: ReplyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// The upstream answered.
    Answered,
    /// The upstream did not answer, or answered with an HTTP error.
    Failed,
    /// The answer's content, in bytes of text (observed apart from `Answered`: content
    /// is read where it is inspected).
    Content(u64),
}

/// What content inspection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// A prompt injection in content the agent received.
    Injection,
    /// A secret in the agent's arguments.
    Secret,
}

/// Every agent's state.
#[derive(Debug)]
pub struct Monitor {
    settings: Settings,
    shards: [Mutex<HashMap<Box<str>, AgentState>>; SHARDS],
}

fn shard_of(agent: &str) -> usize {
    agent
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        .wrapping_shr(59) as usize
        % SHARDS
}

impl Monitor {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn shard(&self, agent: &str) -> MutexGuard<'_, HashMap<Box<str>, AgentState>> {
        let [first, ..] = &self.shards;
        self.shards
            .get(shard_of(agent))
            .unwrap_or(first)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the agent's state, created if new (`None` past [`MAX_AGENTS`]).
    fn with<R>(&self, agent: &str, now: i64, f: impl FnOnce(&mut AgentState) -> R) -> Option<R> {
        let mut shard = self.shard(agent);
        if let Some(st) = shard.get_mut(agent) {
            return Some(f(st));
        }
        if shard.len() >= MAX_AGENTS / SHARDS {
            return None;
        }
        let st = shard
            .entry(agent.into())
            .or_insert_with(|| AgentState::new(now));
        Some(f(st))
    }

    /// The agent's risk score at `now` (0 for an agent never seen): what policies read
    /// as `context.risk`.
    pub fn risk(&self, agent: &str, now_ms: i64) -> u8 {
        let mut shard = self.shard(agent);
        shard.get_mut(agent).map_or(0, |st| {
            st.settle(&self.settings, now_ms);
            st.risk(&self.settings, now_ms).round().clamp(0.0, 100.0) as u8
        })
    }

    /// Observes one decided call. Returns a verdict for each agent whose risk it raised:
    /// the caller, and the agent it acts for when delegation fans out. Empty (and no
    /// allocation) when nothing was unusual.
    pub fn call(&self, c: &Call<'_>) -> Vec<Verdict> {
        let s = &self.settings;
        let mut verdicts = Vec::new();
        let mut signals = Vec::new();
        if let Some(Some(v)) = self.with(c.agent, c.time_ms, |st| {
            st.call(s, c, &mut signals);
            st.weigh(s, c.agent, c.time_ms, std::mem::take(&mut signals))
        }) {
            verdicts.push(v);
        }
        if let Some(parent) = c.delegator.filter(|p| *p != c.agent)
            && let Some(Some(v)) = self.with(parent, c.time_ms, |st| {
                st.delegated(s, c.agent, c.time_ms, &mut signals);
                st.weigh(s, parent, c.time_ms, std::mem::take(&mut signals))
            })
        {
            verdicts.push(v);
        }
        verdicts
    }

    /// Observes the answer to a call (sizes of results, upstream failures).
    pub fn reply(&self, r: &Reply<'_>) -> Option<Verdict> {
        let s = &self.settings;
        self.with(r.agent, r.time_ms, |st| {
            let mut signals = Vec::new();
            st.reply(s, r, &mut signals);
            st.weigh(s, r.agent, r.time_ms, signals)
        })
        .flatten()
    }

    /// Observes a finding of content inspection for the agent.
    pub fn finding(&self, agent: &str, f: Finding, now_ms: i64) -> Option<Verdict> {
        let s = &self.settings;
        self.with(agent, now_ms, |st| {
            let mut signals = Vec::new();
            st.finding(f, now_ms, &mut signals);
            st.weigh(s, agent, now_ms, signals)
        })
        .flatten()
    }

    /// Is the agent quarantined (waiting for a person to release it)?
    pub fn quarantined(&self, agent: &str) -> bool {
        self.shard(agent)
            .get(agent)
            .is_some_and(|st| st.p.quarantined)
    }

    /// A person released the agent: its risk is 0 and it may be quarantined again. The
    /// baseline is kept. Returns whether the agent was known.
    pub fn release(&self, agent: &str, now_ms: i64) -> bool {
        self.shard(agent)
            .get_mut(agent)
            .map(|st| st.release(now_ms))
            .is_some()
    }

    /// The agent's baseline as people read it, and its risk now.
    pub fn profile(&self, agent: &str, now_ms: i64) -> Option<(Profile, u8)> {
        let shard = self.shard(agent);
        let st = shard.get(agent)?;
        let risk = st.risk(&self.settings, now_ms).round().clamp(0.0, 100.0) as u8;
        Some((st.p.baseline.profile(&self.settings, now_ms), risk))
    }

    /// Takes in an agent's stored state (at start-up).
    pub fn restore(&self, agent: &str, p: Persisted) {
        self.shard(agent)
            .insert(agent.into(), AgentState::restore(p));
    }

    /// The states changed since the last call, serialised, marking them clean. The caller
    /// stores them; if that fails it calls [`Monitor::mark_dirty`] to try again later.
    pub fn changed(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (agent, st) in shard.iter_mut().filter(|(_, st)| st.dirty) {
                if let Ok(json) = serde_json::to_string(&st.p) {
                    out.push((agent.to_string(), json));
                    st.dirty = false;
                }
            }
        }
        out
    }

    pub fn mark_dirty(&self, agent: &str) {
        if let Some(st) = self.shard(agent).get_mut(agent) {
            st.dirty = true;
        }
    }

    /// A copy of every agent's state (the simulator replays several attacks against one
    /// trained monitor).
    pub fn fork(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            shards: std::array::from_fn(|i| {
                Mutex::new(
                    self.shards
                        .get(i)
                        .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
                        .unwrap_or_default(),
                )
            }),
        }
    }

    /// How many agents are tracked.
    pub fn agents(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// Reads a stored state.
pub fn parse_persisted(json: &str) -> Result<Persisted, String> {
    let mut p: Persisted = serde_json::from_str(json).map_err(|e| e.to_string())?;
    p.baseline.validate()?;
    Ok(p)
}

#[cfg(test)]
mod tests;
