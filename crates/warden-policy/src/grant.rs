//! What the Policy Administrator may put in a task token: could this agent, on this task,
//! be permitted this action at all?
//!
//! A token is issued before the calls it covers, so the arguments, the stated reason, the
//! risk score and the time of each call are not known yet. Each candidate policy's scope is
//! checked exactly; each `when`/`unless` clause is evaluated when it reads only what the
//! token fixes (`context.task`, `context.on_behalf_of`, `context.delegation`,
//! `context.autonomy`, `context.autonomy_rank`, principal and resource attributes) and is
//! *unknown* when it reads anything else of the context. An action is grantable when some
//! permit could apply (no clause known false) and no forbid surely applies (every clause
//! known true). An evaluation error in a known clause refuses: at call time it would deny.
//!
//! This is an upper bound by design: the PEP still decides every call with the real
//! arguments. The token can only narrow what policy allows, never widen it
//! (docs/decisions/0005).

use cedar_policy::{Policy, PolicyId as CedarPolicyId, PolicySet};
use serde_json::Value;
use warden_core::PolicyId;

use crate::explain::BarePermit;
use crate::request::ActionRequest;
use crate::snapshot::PolicySnapshot;

/// Context attributes that a token fixes for its whole life.
const STABLE_CONTEXT: &[&str] = &[
    "task",
    "on_behalf_of",
    "delegation",
    "autonomy",
    "autonomy_rank",
];

/// The answer for one requested action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantability {
    /// Some permit could apply and no forbid surely does.
    Grantable {
        /// The permits that could apply.
        via: Vec<PolicyId>,
    },
    /// Not grantable, and why.
    Refused(String),
}

impl Grantability {
    pub fn is_grantable(&self) -> bool {
        matches!(self, Self::Grantable { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    True,
    False,
    Unknown,
}

impl PolicySnapshot {
    /// Could `req` (its arguments, reason, risk and time ignored) be permitted?
    pub fn grantable(&self, req: &ActionRequest) -> Grantability {
        crate::snapshot::guarded_value(
            || self.grantable_inner(req),
            Grantability::Refused("the policy engine failed while deciding".into()),
        )
    }

    fn grantable_inner(&self, req: &ActionRequest) -> Grantability {
        let q = match req.to_query(&self.types, &self.store) {
            Ok(q) => q,
            Err(e) => return Grantability::Refused(e.to_string()),
        };
        let (_, request, view) = match self.prepare(&q) {
            Ok(p) => p,
            Err(d) => return Grantability::Refused(d.reasons.join("; ")),
        };
        let (_, trace) = self.explain(req);
        let eval = |p: Policy| -> Result<bool, String> {
            let mut set = PolicySet::new();
            set.add(p).map_err(|e| e.to_string())?;
            let r = self.authorizer.is_authorized(&request, &set, view.as_ref());
            if let Some(e) = r.diagnostics().errors().next() {
                return Err(e.to_string());
            }
            Ok(r.diagnostics().reason().next().is_some())
        };
        let mut via = Vec::new();
        for id in &trace.candidates {
            let cid = CedarPolicyId::new(id.as_str());
            let (Some(policy), Some(meta)) = (self.policies.policy(&cid), self.meta.get(&cid))
            else {
                continue;
            };
            let status = match policy_status(policy, &eval) {
                Ok(s) => s,
                Err(e) => return Grantability::Refused(format!("policy `{id}`: {e}")),
            };
            let forbid = meta.effect == cedar_policy::Effect::Forbid;
            match (forbid, status) {
                (true, Tri::True) => {
                    let why = meta.reason.clone().unwrap_or_else(|| "forbidden".into());
                    return Grantability::Refused(format!("forbidden by `{id}`: {why}"));
                }
                (false, Tri::True | Tri::Unknown) => via.push(id.clone()),
                _ => {}
            }
        }
        if via.is_empty() {
            Grantability::Refused("no policy permits this action for this agent".into())
        } else {
            Grantability::Grantable { via }
        }
    }
}

/// Does `policy` apply to the request: surely, surely not, or depends on the call?
fn policy_status(
    policy: &Policy,
    eval: &dyn Fn(Policy) -> Result<bool, String>,
) -> Result<Tri, String> {
    let bare = BarePermit::new(policy)?;
    let with = |conds: Vec<Value>| bare.with(conds);
    if !eval(with(Vec::new())?)? {
        return Ok(Tri::False);
    }
    let mut status = Tri::True;
    for clause in bare.clauses.iter().cloned() {
        if clause.get("body").is_some_and(volatile) {
            status = Tri::Unknown;
            continue;
        }
        if !eval(with(vec![clause])?)? {
            return Ok(Tri::False);
        }
    }
    Ok(status)
}

/// Does the expression read a part of the context that changes from call to call?
fn volatile(expr: &Value) -> bool {
    match expr {
        Value::Object(o) => {
            if o.get("Var").and_then(Value::as_str) == Some("context") {
                return true; // the whole context, or an attribute not vetted below
            }
            for op in [".", "has"] {
                if let Some(access) = o.get(op)
                    && access
                        .get("left")
                        .and_then(|l| l.get("Var"))
                        .and_then(Value::as_str)
                        == Some("context")
                {
                    let attr = access.get("attr").and_then(Value::as_str).unwrap_or("");
                    return !STABLE_CONTEXT.contains(&attr);
                }
            }
            o.values().any(volatile)
        }
        Value::Array(a) => a.iter().any(volatile),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PolicySources, SourceFile};

    fn snapshot(policies: &str) -> PolicySnapshot {
        let mut s = PolicySources::default();
        s.policies.push(SourceFile::new("p.cedar", policies));
        PolicySnapshot::load(&s).unwrap()
    }

    fn req(tool: &str, task: &str) -> ActionRequest {
        serde_json::from_value(serde_json::json!({
            "agent": "a1", "action": "call_tool", "resource": tool,
            "task": {"id": task, "purpose": "p"}, "autonomy": "junior", "time": 0
        }))
        .unwrap()
    }

    const POLICIES: &str = r#"
        @id("search") permit (principal, action == Warden::Action::"call_tool",
            resource == Warden::Tool::"crm/search");
        @id("pay-small") permit (principal, action == Warden::Action::"call_tool",
            resource == Warden::Tool::"fin/pay") when { context.arguments has amount };
        @id("seniors-only") permit (principal, action == Warden::Action::"call_tool",
            resource == Warden::Tool::"fin/refund") when { context.autonomy_rank >= 2 };
        @id("no-export") @reason("exports leave the company") forbid (principal,
            action == Warden::Action::"call_tool", resource == Warden::Tool::"crm/export");
        @id("export") permit (principal, action == Warden::Action::"call_tool",
            resource == Warden::Tool::"crm/export");
        @id("tasked") permit (principal, action == Warden::Action::"call_tool",
            resource == Warden::Tool::"crm/update") when { context.task.id like "crm-*" };
        @id("night") forbid (principal, action == Warden::Action::"call_tool",
            resource == Warden::Tool::"crm/search") when { context.time.hour < 6 };
    "#;

    #[test]
    fn scope_and_stable_conditions_decide_volatile_ones_do_not() {
        let s = snapshot(POLICIES);
        // Plain permit; the time-dependent forbid is unknown, so it does not refuse.
        assert!(s.grantable(&req("crm/search", "t")).is_grantable());
        // Depends on the arguments: unknown, grantable; the PEP decides per call.
        assert!(s.grantable(&req("fin/pay", "t")).is_grantable());
        // Fixed by the token: a junior never gets refunds.
        assert!(!s.grantable(&req("fin/refund", "t")).is_grantable());
        // An unconditional forbid wins over the permit.
        match s.grantable(&req("crm/export", "t")) {
            Grantability::Refused(why) => assert!(why.contains("no-export"), "{why}"),
            g => panic!("{g:?}"),
        }
        // The task id is fixed by the token.
        assert!(s.grantable(&req("crm/update", "crm-7")).is_grantable());
        assert!(!s.grantable(&req("crm/update", "mail-7")).is_grantable());
        // Nothing permits it.
        assert!(!s.grantable(&req("crm/delete", "t")).is_grantable());
        // An invalid request is refused, not granted.
        assert!(!s.grantable(&req("nonsense", "t")).is_grantable());
    }

    #[test]
    fn the_empty_set_grants_nothing() {
        let s = PolicySnapshot::deny_all().unwrap();
        assert!(!s.grantable(&req("crm/search", "t")).is_grantable());
    }
}
