//! `warden policy explain`, one level down: for each candidate policy, did its scope match,
//! and which of its conditions held. Each top-level `&&` conjunct of each `when` / `unless`
//! clause is evaluated alone, as a one-condition policy over the same request.

use cedar_policy::{Policy, PolicyId as CedarPolicyId, PolicySet};
use serde::Serialize;
use serde_json::{Value, json};
use warden_core::{Decision, PolicyId};

use crate::request::ActionRequest;
use crate::snapshot::{PolicySnapshot, Trace};

/// What one condition evaluated to for the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "error")]
pub enum Outcome {
    True,
    False,
    Error(String),
}

/// One conjunct of a `when` or `unless` clause.
#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    /// `when` or `unless`.
    pub clause: String,
    /// The conjunct, in Cedar syntax.
    pub text: String,
    /// `"outcome": "true" | "false" | "error"`, with `"error": "..."` for errors.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A candidate policy, explained.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyExplanation {
    pub id: PolicyId,
    pub scope_matched: bool,
    pub conditions: Vec<Condition>,
}

/// A decision with everything that went into it.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    pub trace: Trace,
    pub policies: Vec<PolicyExplanation>,
}

impl PolicySnapshot {
    /// Decides `req` and explains every candidate policy condition by condition.
    pub fn explain_conditions(&self, req: &ActionRequest) -> Explanation {
        let (decision, trace) = self.explain(req);
        let mut policies = Vec::new();
        if let Ok(q) = req.to_query(&self.types, &self.store)
            && let Ok((_, request, view)) = self.prepare(&q)
        {
            let eval = |p: Policy| -> Outcome {
                let mut set = PolicySet::new();
                if let Err(e) = set.add(p) {
                    return Outcome::Error(e.to_string());
                }
                let r = self.authorizer.is_authorized(&request, &set, &view);
                if let Some(e) = r.diagnostics().errors().next() {
                    return Outcome::Error(e.to_string());
                }
                if r.diagnostics().reason().next().is_some() {
                    Outcome::True
                } else {
                    Outcome::False
                }
            };
            for id in &trace.candidates {
                let Some(policy) = self.policies.policy(&CedarPolicyId::new(id.as_str())) else {
                    continue;
                };
                policies.push(explain_policy(id, policy, &eval));
            }
        }
        Explanation {
            decision,
            trace,
            policies,
        }
    }
}

fn explain_policy(
    id: &PolicyId,
    policy: &Policy,
    eval: &dyn Fn(Policy) -> Outcome,
) -> PolicyExplanation {
    let Ok(bare) = BarePermit::new(policy) else {
        return PolicyExplanation {
            id: id.clone(),
            scope_matched: false,
            conditions: Vec::new(),
        };
    };
    let with_conditions = |conds: Vec<Value>| bare.with(conds).ok();
    let clauses = &bare.clauses;
    let scope_matched = with_conditions(Vec::new()).map(eval) == Some(Outcome::True);
    let mut conditions = Vec::new();
    for clause in clauses {
        let kind = clause.get("kind").and_then(Value::as_str).unwrap_or("when");
        let mut conjuncts = Vec::new();
        if let Some(body) = clause.get("body") {
            flatten_and(body, &mut conjuncts);
        }
        for c in conjuncts {
            let single = with_conditions(vec![json!({"kind": "when", "body": c})]);
            let (text, outcome) = match single {
                Some(p) => (condition_text(&p), eval(p)),
                None => (
                    "<unprintable condition>".to_owned(),
                    Outcome::Error("cannot rebuild".into()),
                ),
            };
            conditions.push(Condition {
                clause: kind.to_owned(),
                text,
                outcome,
            });
        }
    }
    PolicyExplanation {
        id: id.clone(),
        scope_matched,
        conditions,
    }
}

/// A policy rewritten as an unannotated permit whose conditions can be swapped, so that
/// "satisfied" can be read off Cedar's reasons for its scope alone or for one condition at a
/// time (`explain`, and the PA's `grantable`).
pub(crate) struct BarePermit {
    est: Value,
    /// The policy's `when`/`unless` clauses, in Cedar's JSON form.
    pub clauses: Vec<Value>,
}

impl BarePermit {
    pub fn new(policy: &Policy) -> Result<Self, String> {
        let mut est = policy.to_json().map_err(|e| e.to_string())?;
        if let Some(o) = est.as_object_mut() {
            o.insert("effect".into(), json!("permit"));
            o.remove("annotations");
        }
        let clauses = est
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(Self { est, clauses })
    }

    /// The same scope with `conds` as its only conditions.
    pub fn with(&self, conds: Vec<Value>) -> Result<Policy, String> {
        let mut e = self.est.clone();
        if let Some(o) = e.as_object_mut() {
            o.insert("conditions".into(), Value::Array(conds));
        }
        Policy::from_json(None, e).map_err(|e| e.to_string())
    }
}

fn flatten_and(expr: &Value, out: &mut Vec<Value>) {
    match expr.get("&&") {
        Some(and) => {
            if let Some(l) = and.get("left") {
                flatten_and(l, out);
            }
            if let Some(r) = and.get("right") {
                flatten_and(r, out);
            }
        }
        None => out.push(expr.clone()),
    }
}

/// The condition of a one-condition policy, as Cedar prints it.
fn condition_text(p: &Policy) -> String {
    let s = p.to_string();
    let start = s.find("when {").map_or(0, |i| i + "when {".len());
    let end = s.rfind('}').unwrap_or(s.len());
    s.get(start..end).unwrap_or(&s).trim().to_owned()
}
