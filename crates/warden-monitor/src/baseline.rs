//! What normal looks like for one agent, learned online from its calls and persisted: tools
//! and servers used, call rates, data volumes, denial and error rates, hours of activity,
//! call-sequence transitions (a first-order Markov chain over its tools), destinations and
//! delegates. Every collection is bounded.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::stats::{Ewma, Rate};

/// Width of the short rate bucket.
pub const SHORT_MS: i64 = 10_000;
/// Width of the long rate bucket.
pub const LONG_MS: i64 = 300_000;
pub(crate) const MAX_TOOLS: usize = 1_000;
pub(crate) const MAX_NAMES: usize = 1_000;
pub(crate) const MAX_TRANSITIONS: usize = 20_000;

/// One tool as the agent uses it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolStats {
    /// `upstream/tool`.
    pub name: String,
    pub calls: u64,
    pub denied: u64,
    pub failed: u64,
    pub rate: Rate,
    /// ln(1 + bytes) of the arguments the agent sent.
    pub bytes_out: Ewma,
    /// ln(1 + bytes) of the results it received.
    pub bytes_in: Ewma,
    pub last_ms: i64,
    /// Transitions learned out of this tool.
    pub onward: u64,
}

/// An agent's learned profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub since_ms: i64,
    pub last_ms: i64,
    /// Calls learned (allowed and denied).
    pub operations: u64,
    pub denials: u64,
    pub failures: u64,
    pub tools: Vec<ToolStats>,
    pub servers: Vec<String>,
    /// Hosts and mail domains named in arguments (`to`, `url`, ...).
    pub destinations: Vec<String>,
    /// Agents that acted for this one through delegation.
    pub delegates: Vec<String>,
    /// Calls per hour of the day (UTC).
    pub hours: [u64; 24],
    /// Calls per short bucket (10 s) and per long bucket (5 min).
    pub rate: Rate,
    pub rate_long: Rate,
    /// 1 for a denied call, 0 for an allowed one.
    pub denial_rate: Ewma,
    /// 1 for an upstream failure, 0 for an answer.
    pub error_rate: Ewma,
    /// Most distinct delegates active within the fan-out window.
    pub fan_out_peak: u32,
    /// Distinct records (ids, paths) touched per minute.
    #[serde(default)]
    pub records: Rate,
    /// (from, to) tool indices → count.
    #[serde(with = "pairs")]
    pub transitions: HashMap<u64, u64>,
    #[serde(skip)]
    index: HashMap<Box<str>, u32>,
}

pub(crate) fn pair(from: u32, to: u32) -> u64 {
    (u64::from(from) << 32) | u64::from(to)
}

mod pairs {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &HashMap<u64, u64>, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(u32, u32, u64)> = m
            .iter()
            .map(|(k, c)| ((k >> 32) as u32, (k & 0xffff_ffff) as u32, *c))
            .collect();
        v.sort_unstable();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<u64, u64>, D::Error> {
        let v = Vec::<(u32, u32, u64)>::deserialize(d)?;
        Ok(v.into_iter()
            .map(|(a, b, c)| (super::pair(a, b), c))
            .collect())
    }
}

impl Baseline {
    pub fn new(now_ms: i64) -> Self {
        Self {
            since_ms: now_ms,
            last_ms: now_ms,
            ..Self::default()
        }
    }

    /// Reads a stored baseline (its JSON), rebuilding the lookup index; refuses one whose
    /// transitions name tools it does not have.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let mut b: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        b.validate()?;
        Ok(b)
    }

    /// Rebuilds the lookup index of a deserialised baseline and checks that its
    /// transitions name its own tools.
    pub(crate) fn validate(&mut self) -> Result<(), String> {
        let n = self.tools.len() as u64;
        if n > MAX_TOOLS as u64 {
            return Err(format!("{n} tools: at most {MAX_TOOLS} are kept"));
        }
        if self
            .transitions
            .keys()
            .any(|k| (k >> 32) >= n || (k & 0xffff_ffff) >= n)
        {
            return Err("a transition names a tool the baseline does not have".into());
        }
        self.index = self
            .tools
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.name.as_str().into(), u32::try_from(i).ok()?)))
            .collect();
        Ok(())
    }

    /// Enough history to judge by (ATF: 7 days or 1,000 operations, whichever first)?
    pub fn trusted(&self, s: &Settings, now_ms: i64) -> bool {
        self.operations >= s.min_operations
            || (self.operations > 0 && now_ms.saturating_sub(self.since_ms) >= s.min_age_ms)
    }

    pub fn tool(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub(crate) fn tool_mut(&mut self, i: u32) -> Option<&mut ToolStats> {
        self.tools.get_mut(i as usize)
    }

    /// The index of `name`, added if there is room.
    pub(crate) fn add_tool(&mut self, name: &str) -> Option<u32> {
        if let Some(i) = self.tool(name) {
            return Some(i);
        }
        if self.tools.len() >= MAX_TOOLS {
            return None;
        }
        let i = u32::try_from(self.tools.len()).ok()?;
        self.tools.push(ToolStats {
            name: name.to_owned(),
            ..ToolStats::default()
        });
        self.index.insert(name.into(), i);
        Some(i)
    }

    pub(crate) fn transition(&self, from: u32, to: u32) -> u64 {
        self.transitions.get(&pair(from, to)).copied().unwrap_or(0)
    }

    pub(crate) fn learn_transition(&mut self, from: u32, to: u32) {
        let known = self.transitions.contains_key(&pair(from, to));
        if !known && self.transitions.len() >= MAX_TRANSITIONS {
            return;
        }
        *self.transitions.entry(pair(from, to)).or_insert(0) += 1;
        if let Some(t) = self.tool_mut(from) {
            t.onward += 1;
        }
    }

    /// A read-only view for people: the tables of `warden agent baseline`.
    pub fn profile(&self, s: &Settings, now_ms: i64) -> Profile {
        let ops = self.operations.max(1) as f64;
        let mut tools: Vec<ToolProfile> = self
            .tools
            .iter()
            .map(|t| ToolProfile {
                name: t.name.clone(),
                calls: t.calls,
                share: t.calls as f64 / ops,
                denied: t.denied,
                failed: t.failed,
                per_10s: t.rate.per_bucket.mean,
                peak_10s: t.rate.peak,
                typical_bytes_out: typical(&t.bytes_out),
                typical_bytes_in: typical(&t.bytes_in),
                last_ms: t.last_ms,
            })
            .collect();
        tools.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.name.cmp(&b.name)));
        let mut transitions: Vec<TransitionProfile> = self
            .transitions
            .iter()
            .filter_map(|(k, c)| {
                let from = self.tools.get((k >> 32) as usize)?;
                let to = self.tools.get((k & 0xffff_ffff) as usize)?;
                Some(TransitionProfile {
                    from: from.name.clone(),
                    to: to.name.clone(),
                    count: *c,
                    probability: *c as f64 / from.onward.max(1) as f64,
                })
            })
            .collect();
        transitions.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.from.cmp(&b.from)));
        transitions.truncate(20);
        Profile {
            trusted: self.trusted(s, now_ms),
            since_ms: self.since_ms,
            last_ms: self.last_ms,
            operations: self.operations,
            denials: self.denials,
            failures: self.failures,
            denial_rate: self.denial_rate.mean,
            error_rate: self.error_rate.mean,
            per_10s: self.rate.per_bucket.mean,
            per_10s_sd: self.rate.per_bucket.sd(),
            peak_10s: self.rate.peak,
            per_5min: self.rate_long.per_bucket.mean,
            peak_5min: self.rate_long.peak,
            hours: self.hours,
            tools,
            servers: self.servers.clone(),
            destinations: self.destinations.clone(),
            delegates: self.delegates.clone(),
            fan_out_peak: self.fan_out_peak,
            transitions,
        }
    }
}

/// The typical size in bytes behind an EWMA of ln(1 + bytes).
fn typical(e: &Ewma) -> u64 {
    if e.n == 0 {
        0
    } else {
        (e.mean.exp() - 1.0).max(0.0).round() as u64
    }
}

/// Adds `name` to a bounded list of names; says whether it is new.
pub(crate) fn remember(list: &mut Vec<String>, name: &str) -> bool {
    if list.iter().any(|n| n == name) {
        return false;
    }
    if list.len() < MAX_NAMES {
        list.push(name.to_owned());
    }
    true
}

/// A baseline as people read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub trusted: bool,
    pub since_ms: i64,
    pub last_ms: i64,
    pub operations: u64,
    pub denials: u64,
    pub failures: u64,
    pub denial_rate: f64,
    pub error_rate: f64,
    pub per_10s: f64,
    pub per_10s_sd: f64,
    pub peak_10s: u32,
    pub per_5min: f64,
    pub peak_5min: u32,
    pub hours: [u64; 24],
    pub tools: Vec<ToolProfile>,
    pub servers: Vec<String>,
    pub destinations: Vec<String>,
    pub delegates: Vec<String>,
    pub fan_out_peak: u32,
    pub transitions: Vec<TransitionProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolProfile {
    pub name: String,
    pub calls: u64,
    pub share: f64,
    pub denied: u64,
    pub failed: u64,
    pub per_10s: f64,
    pub peak_10s: u32,
    pub typical_bytes_out: u64,
    pub typical_bytes_in: u64,
    pub last_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionProfile {
    pub from: String,
    pub to: String,
    pub count: u64,
    pub probability: f64,
}
