//! A request in Warden's world: an agent doing an action on a tool, resource, prompt or
//! agent, with the context the PE needs (PE-2).

use std::str::FromStr;

use cedar_policy::{Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde::{Deserialize, Serialize};
use warden_core::{ActionKind, AgentId, AutonomyLevel, RiskScore};

use crate::snapshot::{Query, SuppliedEntity};
use crate::value;

/// The task an action belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInfo {
    pub id: String,
    #[serde(default)]
    pub purpose: String,
}

/// One action by one agent, as the Policy Engine decides it.
///
/// `resource` names the target: `server/tool` for `call_tool`, `server/uri` for
/// `read_resource`, `server/prompt` for `get_prompt`, an agent id for `send_message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub agent: AgentId,
    pub action: ActionKind,
    pub resource: String,
    /// The tool's arguments, exactly as the agent sent them.
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub task: TaskInfo,
    /// The human the agent acts for, if any (a `Warden::User` id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// The agents that delegated this task, root first. Empty: the agent's own task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegated_by: Vec<AgentId>,
    pub autonomy: AutonomyLevel,
    #[serde(default)]
    pub risk: RiskScore,
    /// How much of the `[[limits]]` matching this call the caller has used already, in
    /// percent of the fullest one (0 when none match). Lets a policy act before a cap
    /// refuses, e.g. require approval above 80 %.
    #[serde(default)]
    pub limit_used: i64,
    /// Seconds since the Unix epoch. The engine has no clock: the caller says when.
    pub time: i64,
    /// The agent's stated reason for this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What content inspection knows (`context.inspection`).
    #[serde(default)]
    pub inspection: ContentContext,
}

/// `context.inspection`: what content inspection found (IO-1, IO-2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentContext {
    /// The agent's task received content with a prompt-injection finding.
    #[serde(default)]
    pub tainted: bool,
    /// What was found in this call's arguments: `injection`, `secret`, `pii`, and the
    /// rule ids (e.g. `aws_access_key`, `override_instructions`).
    #[serde(default)]
    pub findings: Vec<String>,
}

/// Warden's entity type names, parsed once per snapshot.
#[derive(Debug, Clone)]
pub(crate) struct WardenTypes {
    agent: EntityTypeName,
    user: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
    server: EntityTypeName,
    action: EntityTypeName,
}

impl WardenTypes {
    pub(crate) fn new() -> Result<Self, String> {
        let t = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        Ok(Self {
            agent: t("Warden::Agent")?,
            user: t("Warden::User")?,
            tool: t("Warden::Tool")?,
            resource: t("Warden::McpResource")?,
            prompt: t("Warden::Prompt")?,
            server: t("Warden::ToolServer")?,
            action: t("Warden::Action")?,
        })
    }
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// Why an action request cannot be put to the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("resource `{resource}` of {action} must be `server/name`")]
    NotServerScoped {
        action: ActionKind,
        resource: String,
    },
    #[error("resource `{0}` of send_message must be an agent id: {1}")]
    NotAnAgent(String, warden_core::IdError),
    #[error("{0}")]
    Value(#[from] value::ValueError),
    #[error("context: {0}")]
    Context(String),
}

impl ActionRequest {
    pub(crate) fn to_query(
        &self,
        t: &WardenTypes,
        store: &cedar_policy::Entities,
    ) -> Result<Query, RequestError> {
        let principal = uid(&t.agent, self.agent.as_str());
        let action = uid(&t.action, self.action.as_str());
        let mut supplied = Vec::new();
        let resource = match self.action {
            ActionKind::SendMessage => {
                AgentId::new(self.resource.as_str())
                    .map_err(|e| RequestError::NotAnAgent(self.resource.clone(), e))?;
                uid(&t.agent, &self.resource)
            }
            kind => {
                let ty = match kind {
                    ActionKind::CallTool => &t.tool,
                    ActionKind::ReadResource => &t.resource,
                    _ => &t.prompt,
                };
                let server = match self.resource.split_once('/') {
                    Some((s, rest)) if !s.is_empty() && !rest.is_empty() => s,
                    _ => {
                        return Err(RequestError::NotServerScoped {
                            action: kind,
                            resource: self.resource.clone(),
                        });
                    }
                };
                let r = uid(ty, &self.resource);
                // A tool the entity store does not know is still a child of its server.
                if store.get(&r).is_none() {
                    supplied.push(SuppliedEntity {
                        uid: r.clone(),
                        attrs: Vec::new(),
                        parents: vec![uid(&t.server, server)],
                    });
                }
                r
            }
        };
        let context = self.context(t)?;
        Ok(Query {
            principal,
            action,
            resource,
            context,
            supplied,
        })
    }

    fn context(&self, t: &WardenTypes) -> Result<Context, RequestError> {
        let ctx_err =
            |e: cedar_policy::ExpressionConstructionError| RequestError::Context(e.to_string());
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(10);
        pairs.push((
            "arguments".into(),
            value::record_from_json(&self.arguments, "arguments")?,
        ));
        pairs.push((
            "task".into(),
            RestrictedExpression::new_record([
                (
                    "id".into(),
                    RestrictedExpression::new_string(self.task.id.clone()),
                ),
                (
                    "purpose".into(),
                    RestrictedExpression::new_string(self.task.purpose.clone()),
                ),
            ])
            .map_err(ctx_err)?,
        ));
        if let Some(user) = &self.on_behalf_of {
            pairs.push((
                "on_behalf_of".into(),
                RestrictedExpression::new_entity_uid(uid(&t.user, user)),
            ));
        }
        let chain = self
            .delegated_by
            .iter()
            .chain(std::iter::once(&self.agent))
            .map(|a| RestrictedExpression::new_entity_uid(uid(&t.agent, a.as_str())));
        pairs.push((
            "delegation".into(),
            RestrictedExpression::new_record([
                (
                    "depth".into(),
                    RestrictedExpression::new_long(self.delegated_by.len() as i64),
                ),
                ("chain".into(), RestrictedExpression::new_set(chain)),
            ])
            .map_err(ctx_err)?,
        ));
        pairs.push((
            "autonomy".into(),
            RestrictedExpression::new_string(self.autonomy.as_str().into()),
        ));
        pairs.push((
            "autonomy_rank".into(),
            RestrictedExpression::new_long(self.autonomy.rank()),
        ));
        pairs.push((
            "risk".into(),
            RestrictedExpression::new_long(i64::from(self.risk.value())),
        ));
        pairs.push((
            "limit_used".into(),
            RestrictedExpression::new_long(self.limit_used.clamp(0, 100)),
        ));
        let day = self.time.div_euclid(86_400);
        pairs.push((
            "time".into(),
            RestrictedExpression::new_record([
                ("unix".into(), RestrictedExpression::new_long(self.time)),
                (
                    "hour".into(),
                    RestrictedExpression::new_long(self.time.rem_euclid(86_400) / 3600),
                ),
                (
                    // 1970-01-01 was a Thursday (4).
                    "weekday".into(),
                    RestrictedExpression::new_long((day + 3).rem_euclid(7) + 1),
                ),
            ])
            .map_err(ctx_err)?,
        ));
        if let Some(reason) = &self.reason {
            pairs.push((
                "reason".into(),
                RestrictedExpression::new_string(reason.clone()),
            ));
        }
        pairs.push((
            "inspection".into(),
            RestrictedExpression::new_record([
                (
                    "tainted".into(),
                    RestrictedExpression::new_bool(self.inspection.tainted),
                ),
                (
                    "findings".into(),
                    RestrictedExpression::new_set(
                        self.inspection
                            .findings
                            .iter()
                            .map(|f| RestrictedExpression::new_string(f.clone())),
                    ),
                ),
            ])
            .map_err(ctx_err)?,
        ));
        Context::from_pairs(pairs).map_err(|e| RequestError::Context(e.to_string()))
    }
}
