//! `[approvals]`: human checkpoints (HC-1, docs/approvals.md).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[approvals]`: how a `RequireApproval` decision holds a call until a human decides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// A request nobody decides within this many seconds is denied (timeout). An approval
    /// must also be used within this time of its request.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_secs: u64,
    /// At most this many undecided requests per agent: more are refused at once (no
    /// approval-fatigue flooding).
    #[serde(default = "default_pending")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_pending_per_agent: u32,
    /// At most this many requests per agent per hour.
    #[serde(default = "default_per_hour")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_requests_per_hour: u32,
    /// Who may decide, by agent id (`"*"`: every agent): names of admin credentials.
    /// Agents with no entry (and no `"*"`) are decided by their sponsors, which must then
    /// hold admin credentials named as the sponsor (e.g. `alice@example.com`).
    #[serde(default)]
    pub approvers: BTreeMap<String, Vec<String>>,
}

fn default_timeout() -> u64 {
    300
}

fn default_pending() -> u32 {
    3
}

fn default_per_hour() -> u32 {
    30
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            timeout_secs: default_timeout(),
            max_pending_per_agent: default_pending(),
            max_requests_per_hour: default_per_hour(),
            approvers: BTreeMap::new(),
        }
    }
}

impl ApprovalsConfig {
    /// Who may decide for `agent`: its configured approvers (and the `"*"` ones), else its
    /// sponsors.
    pub fn approvers_for(&self, agent: &str, sponsors: &[String]) -> Vec<String> {
        let mut out: Vec<String> = [agent, "*"]
            .iter()
            .filter_map(|k| self.approvers.get(*k))
            .flatten()
            .cloned()
            .collect();
        if out.is_empty() {
            out = sponsors.to_vec();
        }
        out.sort();
        out.dedup();
        out
    }
}
