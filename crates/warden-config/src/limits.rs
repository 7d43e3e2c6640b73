//! `[[limits]]`: rate limits and blast-radius caps on the decision path (HC-2).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a limit counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// Each agent (the one calling).
    #[default]
    Agent,
    /// Each task.
    Task,
    /// Each agent and tool.
    Tool,
    /// Each delegation tree: the root agent and everything delegated from it.
    Tree,
}

/// How a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Token bucket: `max` calls at once, refilled at `max` per `window_secs`.
    Rate,
    /// Sliding window: at most `max` (calls, or the sum of argument `sum`) in any
    /// `window_secs`.
    Cap,
}

/// One `[[limits]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Named in denials and the audit trail.
    pub name: String,
    pub kind: LimitKind,
    /// Which calls count: a resource pattern, `*` matching any run of characters
    /// (e.g. `crm/delete_*`, `finance/*`). Default: every call.
    #[serde(default = "star", rename = "match")]
    pub matches: String,
    #[serde(default)]
    pub per: LimitScope,
    /// Calls (or the summed argument) allowed per window; for `rate`, the burst.
    #[schemars(range(min = 0.0))]
    pub max: f64,
    #[schemars(range(min = 1, max = 2592000))]
    pub window_secs: u64,
    /// `cap` only: add this numeric argument instead of 1 (e.g. `amount`). A call without
    /// it, or with a non-number, is denied: the cap could not be enforced.
    #[serde(default)]
    pub sum: Option<String>,
}

fn star() -> String {
    "*".into()
}
