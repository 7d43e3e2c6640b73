//! The gateway's side of the audit trail (AU-1, AU-3): building records from what the
//! decision path knows, and the durability each call needs before it is forwarded.

use std::sync::Arc;

use serde_json::{Map, Value};
use warden_audit::{Auditor, DecisionRecord, Durability, EventRecord, Record};
use warden_config::{AuditDurability, DurabilityMode};
use warden_core::{AutonomyLevel, Decision};
use warden_identity::token::AccessClaims;

/// The audit writer and the durability policy, shared by every front end.
#[derive(Debug, Clone)]
pub struct Audit {
    pub auditor: Auditor,
    durability: AuditDurability,
    /// Argument names redacted on top of the built-in ones.
    redact_keys: Vec<String>,
    /// Masks the secrets and personal data in recorded strings (IO-2: the audit trail
    /// holds no plaintext secret, whatever the member is called).
    pub inspector: Arc<warden_inspect::Inspector>,
}

fn mode(m: DurabilityMode) -> Durability {
    match m {
        DurabilityMode::Process => Durability::Process,
        DurabilityMode::Disk => Durability::Disk,
    }
}

impl Audit {
    pub fn new(
        auditor: Auditor,
        config: &warden_config::AuditConfig,
        inspector: Arc<warden_inspect::Inspector>,
    ) -> Arc<Self> {
        Arc::new(Self {
            auditor,
            durability: config.durability,
            redact_keys: config.redact_keys.clone(),
            inspector,
        })
    }

    /// The arguments as recorded: their digest and their redacted form. `no_secrets`: the
    /// arguments were inspected on the way and hold no secret, so the DLP pass is skipped.
    pub fn with_arguments(
        &self,
        mut r: DecisionRecord,
        args: Option<&Map<String, Value>>,
        no_secrets: bool,
    ) -> DecisionRecord {
        if let Some(a) = args {
            r.args_digest = Some(warden_audit::record::args_digest(a));
            r.args = Some(if no_secrets {
                warden_audit::record::redact_with(a, &self.redact_keys)
            } else {
                self.redact(a)
            });
        }
        r
    }

    /// The arguments with secrets redacted, as records and approvers see them: members
    /// named like secrets blanked, long strings cut, and every secret or personal value
    /// the DLP rules find masked.
    pub fn redact(&self, args: &Map<String, Value>) -> Value {
        // Masked before long strings are cut, so that a cut never leaves part of a
        // secret the rules would no longer recognise.
        match crate::inspection::masked_strings(&self.inspector, args) {
            Some(masked) => warden_audit::record::redact_with(&masked, &self.redact_keys),
            None => warden_audit::record::redact_with(args, &self.redact_keys),
        }
    }

    /// How durable the record of a call by an agent at `level` must be before forwarding.
    pub fn durability(&self, level: AutonomyLevel) -> Durability {
        mode(match level {
            AutonomyLevel::Intern => self.durability.intern,
            AutonomyLevel::Junior => self.durability.junior,
            AutonomyLevel::Senior => self.durability.senior,
            AutonomyLevel::Principal => self.durability.principal,
        })
    }

    /// Queues a record that gates nothing (a refusal, an outcome).
    pub fn record(&self, r: DecisionRecord) {
        self.auditor.record(&Record::Decision(Box::new(r)));
    }

    /// Queues `r` once the current task has yielded, so the answer it describes goes out
    /// first: canonicalising a record is the largest part of recording it, and an outcome
    /// gates nothing.
    pub fn record_after_answer(&self, r: Record) {
        let auditor = self.auditor.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { auditor.record(&r) });
            }
            Err(_) => auditor.record(&r),
        }
    }

    /// Queues a lifecycle event.
    pub fn event(&self, e: EventRecord) {
        self.auditor.record(&Record::Event(e));
    }

    /// Writes a lifecycle event and waits until it is durable on disk: the change it
    /// records is reported done only once its record is.
    pub async fn event_durable(&self, e: EventRecord) -> Result<u64, warden_audit::AuditError> {
        self.auditor
            .commit(&Record::Event(e), Durability::Disk)
            .await
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A decision record with the caller's identity filled in from its token: agent,
/// sponsors, the human it acts for, the delegation chain, task and token id (ID-4).
pub fn from_claims(c: Option<&AccessClaims>, endpoint: &str, via: &str) -> DecisionRecord {
    let mut r = DecisionRecord {
        time_ms: now_ms(),
        endpoint: endpoint.to_owned(),
        via: via.to_owned(),
        ..DecisionRecord::default()
    };
    if let Some(c) = c {
        r.agent = Some(c.client_id.clone());
        r.sponsors.clone_from(&c.sponsor);
        r.on_behalf_of = c.on_behalf_of().map(str::to_owned);
        r.delegation = c.delegated_by().into_iter().map(str::to_owned).collect();
        r.task = c.task().map(|t| t.task_id.clone());
        r.token_id = Some(c.jti.clone());
    }
    r
}

/// Fills in what the decision says.
pub fn with_decision(
    mut r: DecisionRecord,
    d: &Decision,
    reason_id: &str,
    policy_version: &str,
) -> DecisionRecord {
    r.decision = d.effect.as_str().to_owned();
    r.reason_id = reason_id.to_owned();
    r.policies = d.determining.iter().map(ToString::to_string).collect();
    r.policy_version = policy_version.to_owned();
    r.reasons.clone_from(&d.reasons);
    r.reasons
        .extend(d.errors.iter().map(|e| format!("error: {}", e.message)));
    r
}

/// `GET /metrics`: Prometheus text format. The audit trail's health: a non-zero
/// `warden_audit_failing` means calls are being refused because their records cannot be
/// written (AU-3).
pub async fn metrics(
    axum::extract::State((a, monitoring)): axum::extract::State<(
        Arc<Audit>,
        Arc<crate::monitoring::Monitoring>,
    )>,
) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let h = a.auditor.health();
    let mut out = format!(
        "# HELP warden_audit_records_written_total Audit records committed since start.\n\
         # TYPE warden_audit_records_written_total counter\n\
         warden_audit_records_written_total {}\n\
         # HELP warden_audit_commits_total Group commits since start.\n\
         # TYPE warden_audit_commits_total counter\n\
         warden_audit_commits_total {}\n\
         # HELP warden_audit_leader_commits_total Group commits made on a call's own thread, with no hand-off to the writer thread.\n\
         # TYPE warden_audit_leader_commits_total counter\n\
         warden_audit_leader_commits_total {}\n\
         # HELP warden_audit_write_failures_total Records that could not be written (their calls were refused).\n\
         # TYPE warden_audit_write_failures_total counter\n\
         warden_audit_write_failures_total {}\n\
         # HELP warden_audit_failing 1 while the audit log cannot be written and calls are refused.\n\
         # TYPE warden_audit_failing gauge\n\
         warden_audit_failing {}\n\
         # HELP warden_audit_checkpoints_total Checkpoints signed since start.\n\
         # TYPE warden_audit_checkpoints_total counter\n\
         warden_audit_checkpoints_total {}\n\
         # HELP warden_audit_log_size Records in the audit log.\n\
         # TYPE warden_audit_log_size gauge\n\
         warden_audit_log_size {}\n",
        h.written.load(Relaxed),
        h.commits.load(Relaxed),
        h.leader_commits.load(Relaxed),
        h.failed.load(Relaxed),
        u8::from(h.failing.load(Relaxed)),
        h.checkpoints.load(Relaxed),
        h.size.load(Relaxed),
    );
    out.push_str(&monitoring.metrics());
    out
}
