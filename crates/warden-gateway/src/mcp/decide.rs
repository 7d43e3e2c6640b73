//! The per-call decision of the MCP gateway (PE-1): the token must grant the action **and**
//! the Policy Engine must allow it with the real arguments. Anything else refuses, with a
//! stable JSON-RPC error code and reason id (docs/mcp.md).
// A refusal carries its whole decision; it is built only on the refusing path.
#![allow(clippy::result_large_err)]

use serde_json::{Map, Value, json};
use warden_core::{ActionKind, AgentId, Decision, Effect, RiskScore};
use warden_identity::token::AccessClaims;
use warden_mcp::{Action, CompletionRef, ListKind, codes};
use warden_policy::{ActionRequest, ContentContext, Grantability, PolicySnapshot, TaskInfo};

use super::local::LocalBinding;
use crate::inspection::pins::Pins;

/// Who is asking, for which task, through which upstream, and why.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub claims: &'a AccessClaims,
    pub upstream: &'a str,
    /// The agent's stated reason (`_meta["warden/reason"]` or the `Warden-Reason` header).
    pub reason: Option<&'a str>,
    pub now: i64,
    /// Set when the request came through an agent-bound local listener.
    pub local: Option<&'a LocalBinding>,
    /// The approval the agent presents (`_meta["warden/approval"]`).
    pub approval: Option<&'a str>,
    /// `context.limit_used`: percent used of the fullest limit matching the call (set
    /// on the decision path; 0 elsewhere).
    pub limit_used: i64,
    /// `context.risk`: the agent's risk score from the behavioural monitor (set on the
    /// decision path; 0 elsewhere).
    pub risk: u8,
}

impl Caller<'_> {
    /// Does the task allow `kind` on `resource`? (A local listener without configured
    /// tools does not narrow: the policy alone decides.)
    pub fn granted(&self, kind: ActionKind, resource: &str) -> bool {
        self.local.is_some_and(|l| l.policy_only) || self.claims.grants(kind, resource)
    }

    /// Does the task allow any `kind` on `upstream`?
    pub fn grants_any_on(&self, kind: ActionKind, upstream: &str) -> bool {
        self.local.is_some_and(|l| l.policy_only)
            || self.claims.task().is_some_and(|t| {
                t.actions.iter().any(|a| {
                    a.action == kind
                        && a.resource
                            .strip_prefix(upstream)
                            .is_some_and(|r| r.starts_with('/'))
                })
            })
    }

    /// How the caller was authenticated, for the decision record.
    pub fn via(&self) -> &str {
        self.local.map_or("token", |l| l.via.as_str())
    }
}

/// What Warden does with one client request.
#[derive(Debug)]
pub enum Mediation<'f> {
    /// An action on a tool, resource or prompt: decided per call.
    Decide {
        kind: ActionKind,
        name: &'f str,
        arguments: Option<&'f Map<String, Value>>,
    },
    /// A list call: forwarded, and the answer filtered to what the caller may use.
    List(ListKind),
    /// A protocol method with no action on anything (`initialize`, `ping`, ...).
    Protocol,
    /// A method Warden does not mediate: refused, never forwarded.
    NotMediated,
}

/// Methods forwarded without a policy decision: they act on nothing.
const PROTOCOL_METHODS: [&str; 5] = [
    "initialize",
    "ping",
    "server/discover",
    "logging/setLevel",
    "subscriptions/listen",
];

pub fn mediation(action: &Action) -> Mediation<'_> {
    match action {
        Action::CallTool { name, arguments } => Mediation::Decide {
            kind: ActionKind::CallTool,
            name,
            arguments: Some(arguments),
        },
        Action::ReadResource { uri } => Mediation::Decide {
            kind: ActionKind::ReadResource,
            name: uri,
            arguments: None,
        },
        Action::GetPrompt { name, arguments } => Mediation::Decide {
            kind: ActionKind::GetPrompt,
            name,
            arguments: Some(arguments),
        },
        Action::List(kind) => Mediation::List(*kind),
        // Completing a prompt's or template's arguments is decided as using it.
        Action::Complete(CompletionRef::Prompt(name)) => Mediation::Decide {
            kind: ActionKind::GetPrompt,
            name,
            arguments: None,
        },
        Action::Complete(CompletionRef::Resource(uri)) => Mediation::Decide {
            kind: ActionKind::ReadResource,
            name: uri,
            arguments: None,
        },
        Action::Other(m) if PROTOCOL_METHODS.contains(&m.as_str()) => Mediation::Protocol,
        Action::Other(_) => Mediation::NotMediated,
    }
}

/// A refusal: the JSON-RPC error code, the stable reason id, and the decision behind it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: i64,
    pub reason_id: &'static str,
    pub message: String,
    pub decision: Decision,
    /// The approval request this refusal concerns, if any.
    pub approval: Option<String>,
}

impl Refusal {
    /// The `data` member of the JSON-RPC error.
    pub fn data(&self, resource: &str) -> Value {
        json!({
            "reason": self.reason_id,
            "resource": resource,
            "effect": self.decision.effect.as_str(),
            "policies": self.decision.determining,
            "reasons": self.decision.reasons,
            "approval": self.approval,
        })
    }
}

fn request(c: &Caller<'_>, kind: ActionKind, resource: String) -> Result<ActionRequest, String> {
    let agent = AgentId::new(&c.claims.client_id).map_err(|e| e.to_string())?;
    let delegated_by = c
        .claims
        .delegated_by()
        .into_iter()
        .map(AgentId::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let task = c.claims.task().ok_or("the token carries no task")?;
    Ok(ActionRequest {
        agent,
        action: kind,
        resource,
        arguments: Map::new(),
        task: TaskInfo {
            id: task.task_id.clone(),
            purpose: task.purpose.clone(),
        },
        on_behalf_of: c.claims.on_behalf_of().map(str::to_owned),
        delegated_by,
        autonomy: c.claims.autonomy,
        risk: RiskScore::new(i64::from(c.risk)).map_err(|e| e.to_string())?,
        limit_used: c.limit_used,
        time: c.now,
        reason: c.reason.map(str::to_owned),
        inspection: ContentContext::default(),
    })
}

/// Decides one action: granted by the task token, then allowed by the PE with the real
/// arguments and what inspection found (`context.inspection`). `Ok` carries the allowing
/// decision.
pub fn decide(
    snapshot: &PolicySnapshot,
    c: &Caller<'_>,
    kind: ActionKind,
    name: &str,
    arguments: Option<&Map<String, Value>>,
    content: ContentContext,
) -> Result<Decision, Refusal> {
    let resource = format!("{}/{name}", c.upstream);
    if !c.granted(kind, &resource) {
        return Err(Refusal {
            code: codes::NOT_IN_TASK,
            reason_id: "not_in_task",
            message: format!(
                "{} {resource} is not granted by this task's token",
                kind.as_str()
            ),
            decision: Decision::default_deny(format!(
                "{} {resource} is not among the task's granted actions",
                kind.as_str()
            )),
            approval: None,
        });
    }
    let mut req = request(c, kind, resource).map_err(|e| Refusal {
        code: codes::DENIED,
        reason_id: "decision_error",
        message: format!("the request could not be decided: {e}"),
        decision: Decision::default_deny(e),
        approval: None,
    })?;
    if let Some(a) = arguments {
        req.arguments.clone_from(a);
    }
    req.inspection = content;
    let decision = snapshot.evaluate(&req);
    match decision.effect {
        Effect::Allow => Ok(decision),
        Effect::RequireApproval => Err(Refusal {
            code: codes::APPROVAL_REQUIRED,
            reason_id: "approval_required",
            message: format!(
                "{} {} needs a human's approval: {}",
                kind.as_str(),
                req.resource,
                decision.reasons.join("; ")
            ),
            decision,
            approval: None,
        }),
        Effect::Deny => Err(Refusal {
            code: codes::DENIED,
            reason_id: if decision.errors.is_empty() {
                "policy_denied"
            } else {
                "decision_error"
            },
            message: format!(
                "{} {} denied: {}",
                kind.as_str(),
                req.resource,
                decision.reasons.join("; ")
            ),
            decision,
            approval: None,
        }),
    }
}

/// May the caller see this list entry? Granted by the token and grantable under the policy
/// now (a permit could apply; no forbid surely applies without knowing the arguments).
pub fn visible(snapshot: &PolicySnapshot, c: &Caller<'_>, kind: ActionKind, name: &str) -> bool {
    let resource = format!("{}/{name}", c.upstream);
    if !c.granted(kind, &resource) {
        return false;
    }
    request(c, kind, resource)
        .is_ok_and(|req| matches!(snapshot.grantable(&req), Grantability::Grantable { .. }))
}

/// One message of a list answer made safe to show: a result is filtered by `filter`; a
/// result that is not an object is withheld (nothing passes unfiltered because of its
/// shape); anything else the upstream sends with it (a server request or notification, an
/// error) goes through `gate` (`None`: inspection is off); a batch, message by message.
pub fn list_answer(
    v: &mut Value,
    filter: &mut dyn FnMut(&mut Map<String, Value>),
    gate: Option<&crate::inspection::gate::ResultGate>,
) {
    if let Value::Array(batch) = v {
        for m in batch {
            list_answer(m, filter, gate);
        }
        return;
    }
    match v.get_mut("result") {
        Some(Value::Object(result)) => filter(result),
        Some(_) => {
            tracing::warn!(target: "warden::mcp", "a list result that is not an object was withheld");
            *v = json!({
                "jsonrpc": "2.0",
                "id": v.get("id").cloned().unwrap_or(Value::Null),
                "error": {
                    "code": codes::UPSTREAM_FAILED,
                    "message": "the upstream's list result is not a JSON object; Warden withheld it",
                    "data": {"reason": "upstream_garbage"},
                },
            });
        }
        None => {
            if let Some(g) = gate {
                g.apply(v);
            }
        }
    }
}

/// Filters a list result in place: `tools`, `prompts` by name, `resources` by URI; a tool
/// also only while its listed definition is the approved one (EP-4: the listing is taken
/// in by `pins` first). Resource templates are kept only if the task grants some
/// `read_resource` on this upstream (their reads are still decided one by one). Returns
/// how many entries were removed.
pub fn filter_list(
    snapshot: &PolicySnapshot,
    c: &Caller<'_>,
    kind: ListKind,
    result: &mut Map<String, Value>,
    pins: &Pins,
) -> usize {
    let (key, action, field) = match kind {
        ListKind::Tools => ("tools", ActionKind::CallTool, "name"),
        ListKind::Prompts => ("prompts", ActionKind::GetPrompt, "name"),
        ListKind::Resources => ("resources", ActionKind::ReadResource, "uri"),
        ListKind::ResourceTemplates => {
            let any = c.grants_any_on(ActionKind::ReadResource, c.upstream);
            let Some(Value::Array(items)) = result.get_mut("resourceTemplates") else {
                return 0;
            };
            let n = items.len();
            if !any {
                items.clear();
            }
            return n - items.len();
        }
    };
    let Some(Value::Array(items)) = result.get_mut(key) else {
        return 0;
    };
    let tools = kind == ListKind::Tools;
    if tools {
        pins.observe(c.upstream, items, false, c.now);
    }
    let before = items.len();
    items.retain(|item| {
        item.get(field)
            .and_then(Value::as_str)
            .is_some_and(|name| visible(snapshot, c, action, name))
            && (!tools || pins.visible(c.upstream, item))
    });
    before - items.len()
}
