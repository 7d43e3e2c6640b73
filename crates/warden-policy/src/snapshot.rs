//! A loaded, validated, indexed policy set, and the decision step.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect as CedarEffect, Entities, Entity,
    EntityTypeName, EntityUid, PolicyId as CedarPolicyId, PolicySet, Request, RestrictedExpression,
    Schema,
};
use warden_core::{ApprovalRequirement, Decision, DecisionError, Effect, PolicyId};

use crate::error::{LoadError, LoadErrors};
use crate::index::{ScopeKey, SliceIndex, request_keys};
use crate::load::{self, PolicyMeta};
use crate::request::{ActionRequest, WardenTypes};
use crate::schema;
use crate::source::PolicySources;

/// An entity that the request describes itself (AuthZEN `properties`) or that Warden
/// derives (a tool not in the entity store is a child of its server). Attributes in the
/// entity store win over supplied ones: the store is the authoritative source.
#[derive(Debug, Clone)]
pub(crate) struct SuppliedEntity {
    pub uid: EntityUid,
    pub attrs: Vec<(String, RestrictedExpression)>,
    pub parents: Vec<EntityUid>,
}

/// A request in Cedar's terms, ready to decide.
#[derive(Debug)]
pub(crate) struct Query {
    pub principal: EntityUid,
    pub action: EntityUid,
    pub resource: EntityUid,
    pub context: Context,
    pub supplied: Vec<SuppliedEntity>,
}

/// What the decision step saw, for `warden policy explain`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Trace {
    /// Policies whose scope could match (the slice handed to Cedar).
    pub candidates: Vec<PolicyId>,
    /// Candidates whose scope and conditions were satisfied.
    pub satisfied: Vec<PolicyId>,
}

#[derive(Debug, Clone)]
pub(crate) struct ActionInfo {
    keys: Vec<ScopeKey>,
    principals: HashSet<EntityTypeName>,
    resources: HashSet<EntityTypeName>,
}

/// Counts shown when a set is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStats {
    pub policies: usize,
    pub files: usize,
    pub entities: usize,
    pub leaves: usize,
}

/// An immutable, validated policy set with its schema, entity store and scope index.
/// Evaluation takes `&self` and no lock.
#[derive(Debug)]
pub struct PolicySnapshot {
    version: String,
    schema: Schema,
    pub(crate) policies: PolicySet,
    pub(crate) meta: HashMap<CedarPolicyId, Arc<PolicyMeta>>,
    index: SliceIndex,
    pub(crate) store: Entities,
    actions: HashMap<EntityUid, ActionInfo>,
    warnings: Vec<LoadError>,
    stats: SnapshotStats,
    pub(crate) authorizer: Authorizer,
    pub(crate) types: WardenTypes,
}

impl PolicySnapshot {
    /// Loads a policy set: builds the schema, parses and validates every policy, loads the
    /// entities, and indexes the policies by scope. Any error rejects the whole set.
    pub fn load(sources: &PolicySources) -> Result<Self, LoadErrors> {
        let schema = schema::build(&sources.schemas).map_err(LoadErrors)?;
        let parsed = load::parse_policies(&sources.policies).map_err(LoadErrors)?;
        let (errors, warnings) = load::validate(&parsed, &schema, &sources.policies);
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        let store = load::entities(&sources.entities, &schema).map_err(LoadErrors)?;
        let index = SliceIndex::build(&parsed.set)
            .map_err(|e| LoadErrors(vec![LoadError::whole_file("<policies>", e)]))?;
        let actions = action_table(&schema, &store);
        let types = WardenTypes::new().map_err(|e| {
            LoadErrors(vec![LoadError::whole_file(
                schema::BASE_SCHEMA_NAME,
                e.to_string(),
            )])
        })?;
        let stats = SnapshotStats {
            policies: parsed.set.policies().count(),
            files: sources.policies.len() + sources.schemas.len() + sources.entities.len(),
            entities: store.iter().count(),
            leaves: index.leaf_count(),
        };
        Ok(Self {
            version: sources.version(),
            schema,
            policies: parsed.set,
            meta: parsed.meta,
            index,
            store,
            actions,
            warnings,
            stats,
            authorizer: Authorizer::new(),
            types,
        })
    }

    /// The embedded default: Warden's base schema and no policies, so every request is
    /// denied.
    pub fn deny_all() -> Result<Self, LoadErrors> {
        Self::load(&PolicySources::default())
    }

    /// `sha256:` of the sources this set was loaded from.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn stats(&self) -> SnapshotStats {
        self.stats
    }

    /// Validation warnings (the set loaded, but something looks wrong).
    pub fn warnings(&self) -> &[LoadError] {
        &self.warnings
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The metadata of every policy, in id order.
    pub fn policies(&self) -> Vec<&PolicyMeta> {
        let mut all: Vec<&PolicyMeta> = self.meta.values().map(Arc::as_ref).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// One policy's metadata.
    pub fn policy(&self, id: &str) -> Option<&PolicyMeta> {
        self.meta.get(&CedarPolicyId::new(id)).map(Arc::as_ref)
    }

    /// Decides one agent action (PE-1). Never panics; any problem with the request is a
    /// `Deny` that says what was wrong.
    pub fn evaluate(&self, req: &ActionRequest) -> Decision {
        guarded(|| match req.to_query(&self.types, &self.store) {
            Ok(q) => self.decide(&q, None),
            Err(e) => Decision::invalid_request(e.to_string()),
        })
    }

    /// Like [`evaluate`](Self::evaluate), and also says which policies were candidates and
    /// which were satisfied.
    pub fn explain(&self, req: &ActionRequest) -> (Decision, Trace) {
        let mut trace = Trace::default();
        let d = match req.to_query(&self.types, &self.store) {
            Ok(q) => self.decide(&q, Some(&mut trace)),
            Err(e) => Decision::invalid_request(e.to_string()),
        };
        (d, trace)
    }

    /// Decides without the scope index: Cedar evaluates every policy. For tests and
    /// benchmarks that compare the two; the answer is always the same.
    pub fn evaluate_unsliced(&self, req: &ActionRequest) -> Decision {
        match req.to_query(&self.types, &self.store) {
            Ok(q) => self.decide_unsliced(&q),
            Err(e) => Decision::invalid_request(e.to_string()),
        }
    }

    /// Decides a query using the scope index.
    pub(crate) fn decide(&self, q: &Query, trace: Option<&mut Trace>) -> Decision {
        self.decide_with(q, trace, true)
    }

    /// Decides a query by handing Cedar the whole policy set. Same answer as [`decide`],
    /// slower; kept for tests and benchmarks that prove the index changes nothing.
    pub(crate) fn decide_unsliced(&self, q: &Query) -> Decision {
        self.decide_with(q, None, false)
    }

    /// Checks the action and builds the Cedar request and the entity view it is decided
    /// against (the store itself unless the request brings entities of its own).
    pub(crate) fn prepare<'a>(
        &'a self,
        q: &Query,
    ) -> Result<(&'a ActionInfo, Request, Cow<'a, Entities>), Box<Decision>> {
        let Some(action) = self.actions.get(&q.action) else {
            return Err(Box::new(Decision::invalid_request(format!(
                "unknown action {}; the schema declares {}",
                q.action,
                self.action_names()
            ))));
        };
        if let Some(d) = check_applies(action, q) {
            return Err(Box::new(d));
        }
        let view = if q.supplied.is_empty() {
            Cow::Borrowed(&self.store)
        } else {
            Cow::Owned(
                self.local_view(q)
                    .map_err(|e| Box::new(Decision::invalid_request(e)))?,
            )
        };
        let request = Request::new(
            q.principal.clone(),
            q.action.clone(),
            q.resource.clone(),
            q.context.clone(),
            None,
        )
        .map_err(|e| Box::new(Decision::invalid_request(e.to_string())))?;
        Ok((action, request, view))
    }

    fn decide_with(&self, q: &Query, trace: Option<&mut Trace>, sliced: bool) -> Decision {
        let (action, request, view) = match self.prepare(q) {
            Ok(p) => p,
            Err(d) => return *d,
        };
        let view = view.as_ref();
        let mut leaves: Vec<&PolicySet> = Vec::new();
        if sliced {
            let mut pkeys = Vec::with_capacity(8);
            let mut rkeys = Vec::with_capacity(8);
            request_keys(&q.principal, ancestors(view, &q.principal), &mut pkeys);
            request_keys(&q.resource, ancestors(view, &q.resource), &mut rkeys);
            self.index.slices(&pkeys, &action.keys, &rkeys, &mut leaves);
        } else {
            leaves.push(&self.policies);
        }
        let mut outcome = Outcome::default();
        for set in &leaves {
            let response = self.authorizer.is_authorized(&request, set, view);
            let reasons = response.diagnostics().reason().cloned();
            match response.decision() {
                CedarDecision::Deny => outcome.forbids.extend(reasons),
                CedarDecision::Allow => outcome.permits.extend(reasons),
            }
            outcome
                .errors
                .extend(response.diagnostics().errors().map(|e| DecisionError {
                    policy: Some(policy_of(e)),
                    message: e.to_string(),
                }));
        }
        if let Some(t) = trace {
            t.candidates = sorted_ids(leaves.iter().flat_map(|s| s.policies().map(|p| p.id())));
            t.satisfied = sorted_ids(outcome.forbids.iter().chain(outcome.permits.iter()));
        }
        self.conclude(outcome, q)
    }

    fn conclude(&self, mut o: Outcome, q: &Query) -> Decision {
        if !o.errors.is_empty() {
            o.errors
                .sort_by(|a, b| (&a.policy, &a.message).cmp(&(&b.policy, &b.message)));
            o.errors.dedup();
            return Decision::error_deny(o.errors);
        }
        let forbids = self.metas(&o.forbids);
        if !forbids.is_empty() {
            return Decision {
                effect: Effect::Deny,
                determining: forbids.iter().map(|m| m.id.clone()).collect(),
                reasons: forbids.iter().map(|m| because(m, "forbidden")).collect(),
                errors: Vec::new(),
                approval: None,
                notify: Vec::new(),
            };
        }
        let permits = self.metas(&o.permits);
        if permits.is_empty() {
            return Decision::default_deny(format!(
                "no policy permits {} on {} for {} (default deny)",
                q.action, q.resource, q.principal
            ));
        }
        let gated: Vec<&PolicyMeta> = permits
            .iter()
            .copied()
            .filter(|m| m.approval.is_some())
            .collect();
        if !gated.is_empty() {
            let mut approvers: Vec<String> = gated
                .iter()
                .flat_map(|m| m.approvers.iter().cloned())
                .collect();
            if approvers.is_empty() {
                approvers.push("sponsor".into());
            }
            approvers.sort();
            approvers.dedup();
            let reasons: Vec<String> = gated
                .iter()
                .map(|m| m.approval.clone().unwrap_or_default())
                .collect();
            return Decision {
                effect: Effect::RequireApproval,
                determining: gated.iter().map(|m| m.id.clone()).collect(),
                reasons: reasons.clone(),
                errors: Vec::new(),
                approval: Some(ApprovalRequirement { approvers, reasons }),
                notify: Vec::new(),
            };
        }
        let mut notify: Vec<String> = permits
            .iter()
            .flat_map(|m| m.notify.iter().cloned())
            .collect();
        notify.sort();
        notify.dedup();
        Decision {
            effect: Effect::Allow,
            determining: permits.iter().map(|m| m.id.clone()).collect(),
            reasons: permits.iter().map(|m| because(m, "permitted")).collect(),
            errors: Vec::new(),
            approval: None,
            notify,
        }
    }

    fn metas(&self, ids: &[CedarPolicyId]) -> Vec<&PolicyMeta> {
        let mut v: Vec<&PolicyMeta> = ids
            .iter()
            .filter_map(|id| self.meta.get(id).map(Arc::as_ref))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v.dedup_by(|a, b| a.id == b.id);
        v
    }

    fn action_names(&self) -> String {
        let mut names: Vec<String> = self.actions.keys().map(ToString::to_string).collect();
        names.sort();
        names.join(", ")
    }

    /// The entity store for a request that brings entities of its own: the whole store
    /// (policies may name any stored entity, or reach one through an attribute) with the
    /// supplied entities upserted, store attributes winning. Costs a copy of the store, so
    /// the gateway keeps the entities it sees (agents, discovered tools) in the store.
    fn local_view(&self, q: &Query) -> Result<Entities, String> {
        let mut merged = Vec::with_capacity(q.supplied.len());
        for s in &q.supplied {
            merged.push(merge(self.store.get(&s.uid), s)?);
        }
        self.store
            .clone()
            .upsert_entities(merged, None)
            .map_err(|e| format!("request entities: {e}"))
    }
}

#[derive(Default)]
struct Outcome {
    forbids: Vec<CedarPolicyId>,
    permits: Vec<CedarPolicyId>,
    errors: Vec<DecisionError>,
}

/// Runs a decision so that even a panic inside it (ours or Cedar's) is a deny, never an
/// unanswered call or a crashed worker: fail closed.
pub(crate) fn guarded(decide: impl FnOnce() -> Decision) -> Decision {
    guarded_value(
        decide,
        Decision::invalid_request("internal error in the policy engine; denied (fail closed)"),
    )
}

/// Runs `f`; a panic inside it yields `fallback` (fail closed).
pub(crate) fn guarded_value<T>(f: impl FnOnce() -> T, fallback: T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(fallback)
}

fn because(m: &PolicyMeta, verb: &str) -> String {
    match &m.reason {
        Some(r) => r.clone(),
        None => format!("{verb} by policy `{}` ({}:{})", m.id, m.file, m.line),
    }
}

fn sorted_ids<'a>(ids: impl Iterator<Item = &'a CedarPolicyId>) -> Vec<PolicyId> {
    let mut v: Vec<PolicyId> = ids
        .map(|i| PolicyId::new(AsRef::<str>::as_ref(i)))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn policy_of(e: &cedar_policy::AuthorizationError) -> PolicyId {
    match e {
        cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
            PolicyId::new(AsRef::<str>::as_ref(e.policy_id()))
        }
    }
}

fn ancestors<'a>(
    entities: &'a Entities,
    uid: &EntityUid,
) -> Box<dyn Iterator<Item = &'a EntityUid> + 'a> {
    match entities.ancestors(uid) {
        Some(it) => Box::new(it),
        None => Box::new(std::iter::empty()),
    }
}

fn merge(stored: Option<&Entity>, s: &SuppliedEntity) -> Result<Entity, String> {
    let (mut attrs, mut parents) = match stored {
        Some(e) => {
            let (_, attrs, parents) = e.clone().into_inner();
            (attrs, parents)
        }
        None => (HashMap::new(), HashSet::new()),
    };
    for (k, v) in &s.attrs {
        attrs.entry(k.clone()).or_insert_with(|| v.clone());
    }
    parents.extend(s.parents.iter().cloned());
    Entity::new(s.uid.clone(), attrs, parents).map_err(|e| format!("entity {}: {e}", s.uid))
}

fn check_applies(action: &ActionInfo, q: &Query) -> Option<Decision> {
    let bad = |what: &str, uid: &EntityUid, allowed: &HashSet<EntityTypeName>| {
        let mut names: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        names.sort();
        Decision::invalid_request(format!(
            "{} does not apply to {what} {uid}; it applies to {}",
            q.action,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ))
    };
    if !action.principals.contains(q.principal.type_name()) {
        return Some(bad("principal", &q.principal, &action.principals));
    }
    if !action.resources.contains(q.resource.type_name()) {
        return Some(bad("resource", &q.resource, &action.resources));
    }
    None
}

fn action_table(schema: &Schema, store: &Entities) -> HashMap<EntityUid, ActionInfo> {
    schema
        .actions()
        .map(|a| {
            let mut keys = Vec::new();
            request_keys(a, ancestors(store, a), &mut keys);
            // An action's type is always `Action`; an `is` constraint cannot name it.
            keys.retain(|k| !matches!(k, ScopeKey::Type(_)));
            let principals = schema
                .principals_for_action(a)
                .map(|it| it.cloned().collect())
                .unwrap_or_default();
            let resources = schema
                .resources_for_action(a)
                .map(|it| it.cloned().collect())
                .unwrap_or_default();
            (
                a.clone(),
                ActionInfo {
                    keys,
                    principals,
                    resources,
                },
            )
        })
        .collect()
}

/// The effect of a Cedar policy, as Warden names it.
pub fn effect_name(e: CedarEffect) -> &'static str {
    match e {
        CedarEffect::Permit => "permit",
        CedarEffect::Forbid => "forbid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_deciding_is_a_deny() {
        let d = guarded(|| panic!("boom"));
        assert_eq!(d.effect, Effect::Deny);
        assert!(d.reasons[0].contains("fail closed"), "{:?}", d.reasons);
        let ok = guarded(|| Decision::default_deny("x"));
        assert_eq!(ok.reasons, vec!["x".to_owned()]);
    }
}
