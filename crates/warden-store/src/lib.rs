//! Warden's state: storage traits and the embedded default on SQLite.
//!
//! The traits are async and each method is one transaction. The rules of the registry are
//! part of the contract and hold for every backend (`tests/agents.rs` is the conformance
//! suite): an agent always has at least one sponsor while active; removing the last sponsor
//! suspends it (ID-3); a revoked agent stays revoked. The SQL is portable so that the
//! PostgreSQL backend (scale-out, OP-4) can share the migrations.
//!
//! The SQLite store is one file in the data directory, in WAL mode, with foreign keys on.
//! Calls run on tokio's blocking pool, never on an async worker.

mod agents;
mod auth;
mod content;
mod control;
mod migrate;
mod monitor;
mod sqlite;

use std::future::Future;

use warden_core::{AgentId, AgentRecord, AgentState, AutonomyLevel, NewAgent, PublicJwk};

pub use sqlite::SqliteStore;

/// A storage failure, or a registry rule the request would break.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("agent `{0}` does not exist")]
    UnknownAgent(AgentId),
    #[error("agent `{0}` already exists")]
    AgentExists(AgentId),
    #[error("agent `{0}` is revoked; revocation is final")]
    Revoked(AgentId),
    #[error("an agent needs at least one sponsor")]
    NoSponsor,
    #[error("agent `{agent}` has no sponsor `{sponsor}`")]
    UnknownSponsor { agent: AgentId, sponsor: String },
    #[error("agent `{0}` has no sponsor; add one before resuming it")]
    ResumeWithoutSponsor(AgentId),
    #[error("an admin credential named `{0}` already exists")]
    AdminExists(String),
    #[error("no admin credential named `{0}`")]
    UnknownAdmin(String),
    #[error("{0}")]
    Invalid(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the storage task failed: {0}")]
    Task(String),
}

/// What changed when a sponsor was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SponsorRemoved {
    pub agent: AgentRecord,
    /// True when this was the last sponsor and the agent was suspended for it.
    pub suspended: bool,
}

/// An admin API credential (its secret is stored only as a hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdminCredential {
    pub name: String,
    pub created_at: i64,
    /// Who created it: `bootstrap` for the first, else the admin that did.
    pub created_by: String,
}

/// A stored revocation (CR-5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RevocationRecord {
    /// Assigned by the store; ascending.
    pub id: i64,
    /// `token`, `task` or `agent`.
    pub kind: String,
    pub value: String,
    pub reason: String,
    /// The admin credential that revoked it.
    pub revoked_by: String,
    pub created_at: i64,
    /// When the row may be forgotten (the token's own expiry); `None`: never.
    pub expires_at: Option<i64>,
}

/// One kill of an agent (KS-1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KillRecord {
    pub id: i64,
    pub agent: String,
    /// `graceful` or `forced`.
    pub mode: String,
    pub reason: String,
    pub killed_by: String,
    pub killed_at: i64,
    pub resumed_at: Option<i64>,
    pub resumed_by: Option<String>,
}

/// Where an approval request stands (HC-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    /// Nobody decided in time (a timeout denies), or an approval was not used in time.
    Expired,
    /// Approved, and spent on its one call.
    Used,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Used => "used",
        }
    }
}

impl std::str::FromStr for ApprovalState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "used" => Self::Used,
            _ => return Err(format!("unknown approval state `{s}`")),
        })
    }
}

/// A request for a human's approval of one exact action (HC-1).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApprovalRecord {
    pub id: String,
    pub agent: String,
    pub task: String,
    pub action: String,
    pub resource: String,
    /// The arguments as the approver sees them (secrets redacted).
    pub arguments: serde_json::Value,
    /// Finds the approval of the same call retried.
    pub match_key: String,
    /// What the approval is bound to: the match key and the expiry.
    pub binding: String,
    /// Why the policy asks for approval.
    pub reasons: Vec<String>,
    pub stated_reason: Option<String>,
    /// Who may decide.
    pub approvers: Vec<String>,
    pub state: ApprovalState,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
    pub used_at: Option<i64>,
}

/// A task tainted by an injection finding in content its agent received (IO-1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaintRecord {
    pub agent: String,
    pub task: String,
    /// The resource whose content carried the finding.
    pub source: String,
    /// What was found (rule ids).
    pub finding: String,
    /// The audit sequence number of the call that received it.
    pub decision_seq: Option<u64>,
    pub tainted_at: i64,
    pub expires_at: i64,
}

/// The approved definition of a tool (EP-4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolPin {
    pub upstream: String,
    pub tool: String,
    /// SHA-256 (hex) of the definition's canonical JSON.
    pub hash: String,
    /// The canonical JSON.
    pub definition: String,
    pub approved_by: String,
    pub approved_at: i64,
}

/// A tool definition as an upstream listed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolDefinition {
    pub upstream: String,
    pub tool: String,
    pub hash: String,
    pub definition: String,
    pub seen_at: i64,
}

/// An alert the behavioural monitor raised (MO-1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertRecord {
    pub id: i64,
    pub time_ms: i64,
    pub agent: String,
    pub risk: u8,
    /// `alert` or `quarantine`.
    pub action: String,
    /// JSON array of the signals behind it.
    pub signals: String,
    /// Webhook delivery: `none`, `pending`, `delivered`, `failed`.
    pub webhook: String,
}

/// Baselines and alerts of the behavioural monitor.
pub trait MonitorStore: Send + Sync {
    /// Writes agents' serialised monitor states, replacing older ones.
    fn save_baselines(
        &self,
        states: Vec<(String, String)>,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stored states, of one agent or all.
    fn baselines(
        &self,
        agent: Option<&str>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    /// Records an alert; returns its id.
    fn add_alert(&self, a: AlertRecord) -> impl Future<Output = Result<i64, StoreError>> + Send;

    fn set_webhook(
        &self,
        id: i64,
        state: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest `limit` alerts since `since_ms` (of one agent, or all), oldest first.
    fn alerts(
        &self,
        agent: Option<&str>,
        since_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AlertRecord>, StoreError>> + Send;
}

/// Taints and tool pins.
pub trait ContentStore: Send + Sync {
    /// Taints a task (a newer taint of the same task replaces it, never shortening it).
    fn taint(&self, t: TaintRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Taints not expired at `now`.
    fn taints(&self, now: i64)
    -> impl Future<Output = Result<Vec<TaintRecord>, StoreError>> + Send;

    /// Ends the taints of `agent` (of one task, or all); returns how many ended.
    fn clear_taints(
        &self,
        agent: &str,
        task: Option<&str>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    fn tool_pins(&self) -> impl Future<Output = Result<Vec<ToolPin>, StoreError>> + Send;

    /// Approves the definition of `upstream/tool` last seen, which must hash to `hash`.
    fn approve_tool(
        &self,
        upstream: &str,
        tool: &str,
        hash: &str,
        by: &str,
        now: i64,
    ) -> impl Future<Output = Result<ToolPin, StoreError>> + Send;

    /// Records the definitions an upstream lists now; returns the names that changed.
    fn saw_tools(
        &self,
        upstream: &str,
        tools: Vec<ToolDefinition>,
        now: i64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The definitions last seen, every upstream.
    fn tool_sightings(
        &self,
    ) -> impl Future<Output = Result<Vec<ToolDefinition>, StoreError>> + Send;
}

/// Kills and approvals.
pub trait ControlStore: Send + Sync {
    /// Records a kill of every agent in `ids` and suspends them, in one transaction.
    fn kill(
        &self,
        ids: &[AgentId],
        mode: &str,
        reason: &str,
        by: &str,
        now: i64,
    ) -> impl Future<Output = Result<Vec<AgentRecord>, StoreError>> + Send;

    /// Makes a killed or suspended agent active again and closes its kills.
    fn resume(
        &self,
        id: &AgentId,
        by: &str,
        now: i64,
    ) -> impl Future<Output = Result<AgentRecord, StoreError>> + Send;

    /// The latest kill of every agent ever killed.
    fn latest_kills(&self) -> impl Future<Output = Result<Vec<KillRecord>, StoreError>> + Send;

    fn add_approval(
        &self,
        a: ApprovalRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn approval(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<ApprovalRecord>, StoreError>> + Send;

    /// The newest pending or approved, unexpired approval with this match key.
    fn live_approval(
        &self,
        match_key: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<ApprovalRecord>, StoreError>> + Send;

    fn approvals(
        &self,
        state: Option<ApprovalState>,
        agent: Option<&str>,
        limit: u32,
        now: i64,
    ) -> impl Future<Output = Result<Vec<ApprovalRecord>, StoreError>> + Send;

    /// (asked since `since`, pending now) for one agent.
    fn approval_counts(
        &self,
        agent: &str,
        since: i64,
        now: i64,
    ) -> impl Future<Output = Result<(u32, u32), StoreError>> + Send;

    /// Approves or denies a pending approval.
    fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = Result<ApprovalRecord, StoreError>> + Send;

    /// Spends an approved approval; `false` if it is not approved and unexpired.
    fn use_approval(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Admin credentials and revocations.
pub trait AuthStore: Send + Sync {
    /// Creates the first admin credential if there is none; `None` when one exists.
    fn bootstrap_admin(
        &self,
        name: &str,
        secret_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<AdminCredential>, StoreError>> + Send;

    fn add_admin(
        &self,
        name: &str,
        secret_hash: &str,
        created_by: &str,
        now: i64,
    ) -> impl Future<Output = Result<AdminCredential, StoreError>> + Send;

    /// Replaces an admin's secret (recovery when the bootstrap secret is lost).
    fn replace_admin_secret(
        &self,
        name: &str,
        secret_hash: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn admin_by_hash(
        &self,
        secret_hash: &str,
    ) -> impl Future<Output = Result<Option<AdminCredential>, StoreError>> + Send;

    /// Records a revocation; returns it with its id.
    fn add_revocation(
        &self,
        r: RevocationRecord,
    ) -> impl Future<Output = Result<RevocationRecord, StoreError>> + Send;

    /// Revocations after `after_id` still in force at `now`, oldest first.
    fn revocations_since(
        &self,
        after_id: i64,
        now: i64,
    ) -> impl Future<Output = Result<Vec<RevocationRecord>, StoreError>> + Send;

    /// Ids of suspended and revoked agents.
    fn blocked_agents(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The registry's autonomy level of every agent below `principal`.
    fn agent_levels(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, AutonomyLevel)>, StoreError>> + Send;
}

/// The agent registry.
pub trait AgentStore: Send + Sync {
    /// Registers an agent, active, with one key. Needs at least one sponsor.
    fn create_agent(
        &self,
        agent: NewAgent,
        now: i64,
    ) -> impl Future<Output = Result<AgentRecord, StoreError>> + Send;

    fn agent(&self, id: &AgentId) -> impl Future<Output = Result<AgentRecord, StoreError>> + Send;

    /// Every agent, by id.
    fn agents(&self) -> impl Future<Output = Result<Vec<AgentRecord>, StoreError>> + Send;

    /// Moves an agent to `state`. Revoked is final; resuming needs a sponsor.
    fn set_state(
        &self,
        id: &AgentId,
        state: AgentState,
        now: i64,
    ) -> impl Future<Output = Result<AgentRecord, StoreError>> + Send;

    fn set_autonomy(
        &self,
        id: &AgentId,
        autonomy: AutonomyLevel,
        now: i64,
    ) -> impl Future<Output = Result<AgentRecord, StoreError>> + Send;

    fn add_sponsor(
        &self,
        id: &AgentId,
        sponsor: &str,
        now: i64,
    ) -> impl Future<Output = Result<AgentRecord, StoreError>> + Send;

    /// Removes a sponsor; removing the last one suspends the agent (ID-3).
    fn remove_sponsor(
        &self,
        id: &AgentId,
        sponsor: &str,
        now: i64,
    ) -> impl Future<Output = Result<SponsorRemoved, StoreError>> + Send;

    /// Adds `key` as the current key; the previous current key stays valid until
    /// `now + grace_secs` (rotation without downtime).
    fn rotate_key(
        &self,
        id: &AgentId,
        key: PublicJwk,
        grace_secs: i64,
        now: i64,
    ) -> impl Future<Output = Result<AgentRecord, StoreError>> + Send;
}
