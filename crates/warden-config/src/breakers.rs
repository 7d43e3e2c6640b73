//! `[breakers]`: circuit breakers and automatic demotion (HC-3, docs/breakers.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[breakers]`: when an agent's calls on one tool keep failing upstream or keep being
/// denied, its breaker opens and further calls are refused without being decided or
/// forwarded; after `open_secs` one probe call is let through (half-open) and closes the
/// breaker if it succeeds. Breakers that keep opening demote the agent's autonomy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakersConfig {
    /// `false` turns breakers and demotion off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive upstream failures (no answer, or an HTTP error) of one agent on one tool
    /// that open its breaker.
    #[serde(default = "default_failures")]
    #[schemars(range(min = 1, max = 10000))]
    pub failures: u32,
    /// Denials of one agent on one tool within `window_secs` that open its breaker.
    #[serde(default = "default_denials")]
    #[schemars(range(min = 1, max = 10000))]
    pub denials: u32,
    /// Denials of one agent on any tools within `window_secs` that open a breaker over all
    /// of its calls.
    #[serde(default = "default_agent_denials")]
    #[schemars(range(min = 1, max = 10000))]
    pub agent_denials: u32,
    #[serde(default = "default_window")]
    #[schemars(range(min = 1, max = 86400))]
    pub window_secs: u64,
    /// How long a breaker stays open before a probe is let through; doubled each time the
    /// probe fails, up to `max_open_secs`.
    #[serde(default = "default_open")]
    #[schemars(range(min = 1, max = 86400))]
    pub open_secs: u64,
    #[serde(default = "default_max_open")]
    #[schemars(range(min = 1, max = 604800))]
    pub max_open_secs: u64,
    /// Incidents (a breaker of the agent opening from closed) within `demote_window_secs`
    /// that lower the agent's autonomy one level (principal → senior → junior → intern).
    /// The registry is changed; only a person raises it again. `0`: never demote.
    #[serde(default = "default_demote_after")]
    #[schemars(range(min = 0, max = 1000))]
    pub demote_after: u32,
    #[serde(default = "default_demote_window")]
    #[schemars(range(min = 1, max = 2592000))]
    pub demote_window_secs: u64,
}

fn yes() -> bool {
    true
}
fn default_failures() -> u32 {
    5
}
fn default_denials() -> u32 {
    10
}
fn default_agent_denials() -> u32 {
    25
}
fn default_window() -> u64 {
    60
}
fn default_open() -> u64 {
    30
}
fn default_max_open() -> u64 {
    600
}
fn default_demote_after() -> u32 {
    3
}
fn default_demote_window() -> u64 {
    86_400
}

impl Default for BreakersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failures: default_failures(),
            denials: default_denials(),
            agent_denials: default_agent_denials(),
            window_secs: default_window(),
            open_secs: default_open(),
            max_open_secs: default_max_open(),
            demote_after: default_demote_after(),
            demote_window_secs: default_demote_window(),
        }
    }
}

impl BreakersConfig {
    /// What is wrong with the settings, naming the key, if anything.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let ranges: [(&'static str, u64, u64, u64); 8] = [
            ("failures", self.failures.into(), 1, 10_000),
            ("denials", self.denials.into(), 1, 10_000),
            ("agent_denials", self.agent_denials.into(), 1, 10_000),
            ("window_secs", self.window_secs, 1, 86_400),
            ("open_secs", self.open_secs, 1, 86_400),
            ("max_open_secs", self.max_open_secs, 1, 604_800),
            ("demote_after", self.demote_after.into(), 0, 1000),
            ("demote_window_secs", self.demote_window_secs, 1, 2_592_000),
        ];
        if let Some((key, v, lo, hi)) = ranges.iter().find(|(_, v, lo, hi)| v < lo || v > hi) {
            return Some((*key, format!("breakers.{key} = {v}: between {lo} and {hi}")));
        }
        (self.max_open_secs < self.open_secs).then(|| {
            (
                "max_open_secs",
                format!(
                    "breakers.max_open_secs = {} is less than open_secs = {}",
                    self.max_open_secs, self.open_secs
                ),
            )
        })
    }
}
