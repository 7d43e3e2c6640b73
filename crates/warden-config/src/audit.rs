//! `[audit]`: the tamper-evident audit trail's settings (docs/audit.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[audit]`: the tamper-evident audit trail (docs/audit.md). Always on: there is no
/// setting that turns it off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The log's name, the first line of every checkpoint (a schema-less URL is
    /// conventional, e.g. `warden.example.com/audit`). Used when the log is created; an
    /// existing log keeps its name. Default: `warden.local/audit/<random id>`.
    #[serde(default)]
    pub origin: Option<String>,
    /// How durable a call's decision record must be before the call is forwarded, per
    /// autonomy level: `process` (written to the log file: survives a crash of Warden) or
    /// `disk` (fsynced: survives power loss, one fdatasync per group commit).
    #[serde(default)]
    pub durability: AuditDurability,
    /// Sign a checkpoint after this many new records...
    #[serde(default = "default_checkpoint_records")]
    #[schemars(range(min = 1, max = 1000000))]
    pub checkpoint_every_records: u64,
    /// ...or this many seconds after the last one, whichever comes first.
    #[serde(default = "default_checkpoint_secs")]
    #[schemars(range(min = 1, max = 3600))]
    pub checkpoint_every_secs: u64,
    /// Argument names whose values are never written to the record (matched
    /// case-insensitively as substrings), on top of the built-in ones: password, passwd,
    /// secret, token, apikey, api_key, authorization, credential, private_key, privatekey,
    /// cookie.
    #[serde(default)]
    pub redact_keys: Vec<String>,
}

fn default_checkpoint_records() -> u64 {
    1000
}

fn default_checkpoint_secs() -> u64 {
    10
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            origin: None,
            durability: AuditDurability::default(),
            checkpoint_every_records: default_checkpoint_records(),
            checkpoint_every_secs: default_checkpoint_secs(),
            redact_keys: Vec::new(),
        }
    }
}

/// One durability mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityMode {
    /// Written to the log file before forwarding: survives a crash of Warden.
    #[default]
    Process,
    /// Fsynced before forwarding: survives power loss.
    Disk,
}

/// `[audit.durability]`: per autonomy level. Default `process` for every level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditDurability {
    #[serde(default)]
    pub intern: DurabilityMode,
    #[serde(default)]
    pub junior: DurabilityMode,
    #[serde(default)]
    pub senior: DurabilityMode,
    #[serde(default)]
    pub principal: DurabilityMode,
}
