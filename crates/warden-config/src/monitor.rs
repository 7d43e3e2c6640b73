//! `[monitor]`: behavioural baselines, anomaly detection and risk-driven quarantine (MO-1,
//! docs/MONITORING.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;

/// `[monitor]`: Warden learns what each agent normally does and scores how far it strays.
/// The score (0–100, decaying) is `context.risk` in policies; reaching `alert_at` raises an
/// alert, reaching `quarantine_at` suspends the agent and ends its sessions until a person
/// runs `warden resume`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// `false` turns the monitor off (`context.risk` is then always 0).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Calls after which an agent's baseline is trusted (ATF: 1,000) ...
    #[serde(default = "default_min_operations")]
    #[schemars(range(min = 1, max = 100000000))]
    pub min_operations: u64,
    /// ... or days since its first call, whichever comes first (ATF: 7). Until then only
    /// the rule-based detectors speak.
    #[serde(default = "default_min_days")]
    #[schemars(range(min = 0, max = 365))]
    pub min_days: u32,
    /// The risk score halves in this many seconds.
    #[serde(default = "default_half_life")]
    #[schemars(range(min = 10, max = 604800))]
    pub half_life_secs: u64,
    /// Risk at which an alert is raised.
    #[serde(default = "default_alert_at")]
    #[schemars(range(min = 1, max = 100))]
    pub alert_at: u8,
    /// Risk at which the agent is quarantined automatically; `0`: never.
    #[serde(default = "default_quarantine_at")]
    #[schemars(range(min = 0, max = 100))]
    pub quarantine_at: u8,
    /// Calls within 10 s above which any agent is a runaway, trusted baseline or not.
    #[serde(default = "default_runaway")]
    #[schemars(range(min = 1, max = 1000000))]
    pub runaway_per_10s: u32,
    /// Denials within 60 s that make a denial storm.
    #[serde(default = "default_denial_storm")]
    #[schemars(range(min = 1, max = 10000))]
    pub denial_storm: u32,
    /// Distinct delegates acting for one agent within 10 minutes above which fan-out is
    /// reported (a trusted baseline lowers it to twice the agent's peak, at least 3).
    #[serde(default = "default_fan_out")]
    #[schemars(range(min = 1, max = 100000))]
    pub fan_out: u32,
    /// How often changed baselines are written to the store.
    #[serde(default = "default_persist")]
    #[schemars(range(min = 1, max = 3600))]
    pub persist_secs: u64,
    /// Where alerts are sent, signed.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// `[monitor.webhook]`: each alert is POSTed as JSON with
/// `Warden-Signature: t=<unix secs>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, retried with
/// back-off until the receiver answers 2xx.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://`.
    pub url: String,
    /// The signing key: `{ env = "NAME" }` or `{ file = "path" }`.
    pub secret: SecretRef,
    /// Attempts after the first.
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 20))]
    pub retries: u32,
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 100, max = 60000))]
    pub timeout_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_min_operations() -> u64 {
    1_000
}
fn default_min_days() -> u32 {
    7
}
fn default_half_life() -> u64 {
    900
}
fn default_alert_at() -> u8 {
    40
}
fn default_quarantine_at() -> u8 {
    90
}
fn default_runaway() -> u32 {
    50
}
fn default_denial_storm() -> u32 {
    5
}
fn default_fan_out() -> u32 {
    10
}
fn default_persist() -> u64 {
    30
}
fn default_retries() -> u32 {
    5
}
fn default_timeout() -> u64 {
    5_000
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_operations: default_min_operations(),
            min_days: default_min_days(),
            half_life_secs: default_half_life(),
            alert_at: default_alert_at(),
            quarantine_at: default_quarantine_at(),
            runaway_per_10s: default_runaway(),
            denial_storm: default_denial_storm(),
            fan_out: default_fan_out(),
            persist_secs: default_persist(),
            webhook: None,
        }
    }
}

impl MonitorConfig {
    /// What is wrong with the settings, naming the key, if anything.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let ranges: [(&'static str, u64, u64, u64); 9] = [
            ("min_operations", self.min_operations, 1, 100_000_000),
            ("min_days", self.min_days.into(), 0, 365),
            ("half_life_secs", self.half_life_secs, 10, 604_800),
            ("alert_at", self.alert_at.into(), 1, 100),
            ("quarantine_at", self.quarantine_at.into(), 0, 100),
            ("runaway_per_10s", self.runaway_per_10s.into(), 1, 1_000_000),
            ("denial_storm", self.denial_storm.into(), 1, 10_000),
            ("fan_out", self.fan_out.into(), 1, 100_000),
            ("persist_secs", self.persist_secs, 1, 3600),
        ];
        if let Some((key, v, lo, hi)) = ranges.iter().find(|(_, v, lo, hi)| v < lo || v > hi) {
            return Some((*key, format!("monitor.{key} = {v}: between {lo} and {hi}")));
        }
        if self.quarantine_at != 0 && self.quarantine_at < self.alert_at {
            return Some((
                "quarantine_at",
                format!(
                    "monitor.quarantine_at = {} is below alert_at = {}: an agent would be \
                     quarantined without an alert",
                    self.quarantine_at, self.alert_at
                ),
            ));
        }
        let w = self.webhook.as_ref()?;
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            return Some((
                "url",
                format!("monitor.webhook.url = \"{}\": an http(s) URL", w.url),
            ));
        }
        if w.retries > 20 || !(100..=60_000).contains(&w.timeout_ms) {
            return Some((
                "webhook",
                "monitor.webhook: retries at most 20, timeout_ms between 100 and 60000".into(),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_quarantine_below_the_alert_is_refused() {
        let c = MonitorConfig {
            alert_at: 60,
            quarantine_at: 50,
            ..MonitorConfig::default()
        };
        assert_eq!(c.problem().unwrap().0, "quarantine_at");
        let off = MonitorConfig {
            quarantine_at: 0,
            ..MonitorConfig::default()
        };
        assert!(off.problem().is_none());
    }
}
