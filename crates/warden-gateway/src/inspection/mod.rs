//! Content inspection on the MCP path (IO-1, IO-2): arguments are inspected before the
//! decision (their findings enter `context.inspection` and the decision record; a `block`
//! action refuses the call), results before the agent sees them ([`gate::ResultGate`]:
//! annotate, redact, mask, block, or taint the task). A tainted task's high-risk calls need
//! a human's approval, whatever the policy says, until the taint expires or is cleared.
//!
//! The inspector is synchronous and allocation-light; nothing here does I/O on the request
//! path except the taint's store write, which runs on the blocking pool after the answer.

pub mod classifier;
pub mod gate;
pub mod outputs;
pub mod pins;
pub(crate) mod sse;
mod taints;
mod walk;

use std::sync::Arc;

use serde_json::{Map, Value, json};
use warden_config::{
    ContentActions, DlpAction, InjectionAction, InspectionConfig, InspectionRule, PartialActions,
};
use warden_core::AutonomyLevel;
use warden_inspect::{DataClass, Inspector, Kind, Report};
use warden_store::SqliteStore;

pub use crate::limits::glob;

pub use self::sse::InspectedSse;
pub use self::taints::{Taint, Taints};

/// Inspection state shared by every front end.
#[derive(Debug)]
pub struct Inspection {
    pub inspector: Arc<Inspector>,
    pub config: InspectionConfig,
    pub taints: Taints,
    pub pins: pins::Pins,
    pub store: SqliteStore,
    pub audit: Arc<crate::audit::Audit>,
    /// Findings raise the agent's risk (MO-1); result sizes feed its baseline.
    pub monitoring: Arc<crate::monitoring::Monitoring>,
}

/// What the arguments of one call showed.
#[derive(Debug, Default)]
pub struct ArgumentCheck {
    /// For the decision record: rule, category or class, score, where (masked values only).
    pub findings: Vec<Value>,
    /// For `context.inspection.findings`: `injection`, `secret`, `pii` and rule ids.
    pub tags: Vec<String>,
    /// Why the call is refused, when an action says `block`.
    pub block: Option<String>,
    /// DLP rules whose action is `alert`.
    pub alerts: Vec<&'static str>,
    /// Every string was inspected (inspection is on and there were arguments).
    pub scanned: bool,
}

impl ArgumentCheck {
    /// Inspected, and no secret found: the audit trail need not look again.
    pub fn no_secrets(&self) -> bool {
        self.scanned && !self.tags.iter().any(|t| t == DataClass::Secret.as_str())
    }
}

impl Inspection {
    pub fn new(
        config: InspectionConfig,
        inspector: Arc<Inspector>,
        store: SqliteStore,
        audit: Arc<crate::audit::Audit>,
        taints: Vec<warden_store::TaintRecord>,
        pins: Vec<warden_store::ToolPin>,
        monitoring: Arc<crate::monitoring::Monitoring>,
    ) -> Arc<Self> {
        Arc::new(Self {
            pins: pins::Pins::new(
                &config.pinning,
                config.enabled && config.output_schema != warden_config::OutputSchemaAction::Off,
                pins,
                store.clone(),
                Arc::clone(&audit),
                Arc::clone(&inspector),
            ),
            inspector,
            taints: Taints::load(taints),
            config,
            store,
            audit,
            monitoring,
        })
    }

    fn rule_for(&self, resource: &str, autonomy: AutonomyLevel) -> Option<&InspectionRule> {
        self.config.rules.iter().find(|r| {
            (r.tools.is_empty() || r.tools.iter().any(|t| glob(t, resource)))
                && (r.autonomy.is_empty() || r.autonomy.iter().any(|a| a == autonomy.as_str()))
        })
    }

    /// The actions for results of `resource` fetched by an agent at `autonomy`.
    pub fn result_actions(&self, resource: &str, autonomy: AutonomyLevel) -> ContentActions {
        let base = self.config.results.over(ContentActions::results());
        self.over(base, resource, autonomy, |r| r.results)
    }

    /// The actions for arguments of a call on `resource` by an agent at `autonomy`.
    pub fn argument_actions(&self, resource: &str, autonomy: AutonomyLevel) -> ContentActions {
        let base = self.config.arguments.over(ContentActions::arguments());
        self.over(base, resource, autonomy, |r| r.arguments)
    }

    fn over(
        &self,
        base: ContentActions,
        resource: &str,
        autonomy: AutonomyLevel,
        pick: fn(&InspectionRule) -> Option<PartialActions>,
    ) -> ContentActions {
        self.rule_for(resource, autonomy)
            .and_then(pick)
            .map_or(base, |p| p.over(base))
    }

    /// Does a tainted task need approval for `resource`?
    pub fn high_risk(&self, resource: &str) -> bool {
        self.config.high_risk.iter().any(|p| glob(p, resource))
            && !self.config.low_risk.iter().any(|p| glob(p, resource))
    }

    /// Inspects every string in a call's arguments.
    pub fn check_arguments(
        &self,
        resource: &str,
        autonomy: AutonomyLevel,
        arguments: Option<&Map<String, Value>>,
    ) -> ArgumentCheck {
        let mut out = ArgumentCheck::default();
        let Some(args) = arguments.filter(|_| self.config.enabled) else {
            return out;
        };
        out.scanned = true;
        // Resolved at the first finding: most calls have none.
        let mut actions = None;
        walk::strings(args, walk::Scope::All, "/arguments", &mut |path, text| {
            let report = self.inspector.inspect(text, Kind::Argument);
            if report.findings.is_empty() && report.dlp.is_empty() {
                return;
            }
            describe(&report, path, &mut out.findings);
            let actions = *actions.get_or_insert_with(|| self.argument_actions(resource, autonomy));
            let mut tag = |t: &str| {
                if !out.tags.iter().any(|x| x == t) {
                    out.tags.push(t.to_owned());
                }
            };
            if report.injection {
                tag("injection");
                for f in &report.findings {
                    tag(f.rule);
                    tag(f.category.as_str());
                }
                if actions.injection == InjectionAction::Block && out.block.is_none() {
                    out.block = Some(format!(
                        "the argument at {path} reads as a prompt injection ({})",
                        rules_of(&report)
                    ));
                }
            }
            for m in &report.dlp {
                tag(m.class.as_str());
                tag(m.rule);
                match dlp_action(actions, m.class) {
                    DlpAction::Block if out.block.is_none() => {
                        out.block = Some(format!(
                            "the argument at {path} carries {} ({}: {})",
                            class_words(m.class),
                            m.rule,
                            m.masked
                        ));
                    }
                    DlpAction::Alert if !out.alerts.contains(&m.rule) => out.alerts.push(m.rule),
                    _ => {}
                }
            }
        });
        out
    }

    /// Records an alert for DLP rules with the `alert` action.
    pub fn alert(&self, agent: &str, resource: &str, direction: &str, rules: &[&'static str]) {
        if rules.is_empty() {
            return;
        }
        tracing::warn!(target: "warden::inspection", %agent, %resource, direction, rules = ?rules,
            "sensitive data passed (alert)");
        self.audit.event(
            warden_audit::EventRecord::new(crate::audit::now_ms(), "dlp_alert", "warden")
                .agent(agent)
                .detail("resource", resource)
                .detail("direction", direction)
                .detail("rules", json!(rules)),
        );
    }
}

/// `map` with every secret the DLP rules find in its strings masked; `None` when there is
/// none. (Personal data stays: auditors need to see who was mailed.)
pub fn masked_strings(
    inspector: &Inspector,
    map: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let secret = |m: &warden_inspect::DlpMatch| m.class == DataClass::Secret;
    let mut any = false;
    walk::strings(map, walk::Scope::All, "", &mut |_, s| {
        any = any || inspector.inspect(s, Kind::Argument).dlp.iter().any(secret);
    });
    if !any {
        return None;
    }
    let mut out = map.clone();
    walk::strings_mut(&mut out, walk::Scope::All, "", &mut |_, s| {
        let r = inspector.inspect(s, Kind::Argument);
        if r.dlp.iter().any(secret) {
            let masked = r.mask_where(s, secret).into_owned();
            *s = masked;
        }
    });
    Some(out)
}

pub(crate) fn dlp_action(actions: ContentActions, class: DataClass) -> DlpAction {
    match class {
        DataClass::Secret => actions.secrets,
        DataClass::Pii => actions.pii,
    }
}

fn class_words(c: DataClass) -> &'static str {
    match c {
        DataClass::Secret => "a secret",
        DataClass::Pii => "personal data",
    }
}

/// The injection rules a report fired, for messages.
pub(crate) fn rules_of(r: &Report) -> String {
    let mut rules: Vec<&str> = r.findings.iter().map(|f| f.rule).collect();
    rules.dedup();
    rules.join(", ")
}

/// The findings of one string as audit values: no content, DLP values masked.
pub(crate) fn describe(r: &Report, path: &str, out: &mut Vec<Value>) {
    for f in &r.findings {
        out.push(json!({
            "path": path,
            "category": f.category.as_str(),
            "rule": f.rule,
            "score": (f.score * 100.0).round() / 100.0,
            "start": f.start,
            "end": f.end,
        }));
    }
    for m in &r.dlp {
        out.push(json!({
            "path": path,
            "class": m.class.as_str(),
            "rule": m.rule,
            "masked": m.masked,
            "start": m.start,
            "end": m.end,
        }));
    }
}

#[cfg(test)]
mod tests;
