//! The scope index: slices the policy set down to the policies whose scope can match a
//! request, so Cedar evaluates a handful of policies instead of all of them.
//!
//! Plain `Authorizer::is_authorized` evaluates every policy in the set, so its cost grows
//! linearly with the set. Most policies pin their scope (`principal == Agent::"a"`,
//! `resource in ToolServer::"crm"`), and a policy whose scope does not match cannot
//! contribute anything to the decision: not a permit, not a forbid, not an error (Cedar
//! checks the scope before it evaluates a condition). The index files every policy under
//! one key per scope slot:
//!
//! * `== E`, `in E`, `is T in E`  → `Uid(E)`: can only match a request entity that is `E`
//!   or has `E` among its ancestors;
//! * `is T`                        → `Type(T)`;
//! * no constraint                 → `Any`.
//!
//! A request looks up, for each slot, its entity, each of its ancestors, its type and
//! `Any`. Every policy that could match is in a visited leaf; some visited policies may not
//! match (`== E` filed under `Uid(E)` is also visited when `E` is an ancestor), which is
//! harmless because Cedar re-checks the scope. Each leaf is a prebuilt `PolicySet`, so a
//! request pays no per-call set construction. `action in [a, b]` is filed under both keys;
//! results are deduplicated by policy id when leaves are merged.

use std::collections::HashMap;

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};

/// One scope slot's index key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ScopeKey {
    Any,
    Uid(EntityUid),
    Type(EntityTypeName),
}

type ResourceMap = HashMap<ScopeKey, usize>;
type ActionMap = HashMap<ScopeKey, ResourceMap>;

/// principal key → action key → resource key → leaf.
#[derive(Debug)]
pub(crate) struct SliceIndex {
    tree: HashMap<ScopeKey, ActionMap>,
    leaves: Vec<PolicySet>,
}

impl SliceIndex {
    pub(crate) fn build(set: &PolicySet) -> Result<Self, String> {
        let mut buckets: HashMap<(ScopeKey, ScopeKey, ScopeKey), Vec<Policy>> = HashMap::new();
        for p in set.policies() {
            let pk = principal_key(p.principal_constraint());
            let rk = resource_key(p.resource_constraint());
            for ak in action_keys(p.action_constraint()) {
                buckets
                    .entry((pk.clone(), ak, rk.clone()))
                    .or_default()
                    .push(p.clone());
            }
        }
        let mut tree: HashMap<ScopeKey, ActionMap> = HashMap::new();
        let mut leaves = Vec::with_capacity(buckets.len());
        for ((pk, ak, rk), policies) in buckets {
            let mut leaf = PolicySet::new();
            for p in policies {
                leaf.add(p).map_err(|e| e.to_string())?;
            }
            tree.entry(pk)
                .or_default()
                .entry(ak)
                .or_default()
                .insert(rk, leaves.len());
            leaves.push(leaf);
        }
        Ok(Self { tree, leaves })
    }

    /// Pushes every leaf that may hold a policy matching a request with these keys.
    pub(crate) fn slices<'a>(
        &'a self,
        principal: &[ScopeKey],
        action: &[ScopeKey],
        resource: &[ScopeKey],
        out: &mut Vec<&'a PolicySet>,
    ) {
        for pk in principal {
            let Some(actions) = self.tree.get(pk) else {
                continue;
            };
            for ak in action {
                let Some(resources) = actions.get(ak) else {
                    continue;
                };
                for rk in resource {
                    if let Some(leaf) = resources.get(rk).and_then(|i| self.leaves.get(*i)) {
                        out.push(leaf);
                    }
                }
            }
        }
    }

    /// How many leaves the index holds.
    pub(crate) fn leaf_count(&self) -> usize {
        self.leaves.len()
    }
}

fn principal_key(c: PrincipalConstraint) -> ScopeKey {
    match c {
        PrincipalConstraint::Any => ScopeKey::Any,
        PrincipalConstraint::In(e)
        | PrincipalConstraint::Eq(e)
        | PrincipalConstraint::IsIn(_, e) => ScopeKey::Uid(e),
        PrincipalConstraint::Is(t) => ScopeKey::Type(t),
    }
}

fn resource_key(c: ResourceConstraint) -> ScopeKey {
    match c {
        ResourceConstraint::Any => ScopeKey::Any,
        ResourceConstraint::In(e) | ResourceConstraint::Eq(e) | ResourceConstraint::IsIn(_, e) => {
            ScopeKey::Uid(e)
        }
        ResourceConstraint::Is(t) => ScopeKey::Type(t),
    }
}

fn action_keys(c: ActionConstraint) -> Vec<ScopeKey> {
    match c {
        ActionConstraint::Any => vec![ScopeKey::Any],
        ActionConstraint::Eq(e) => vec![ScopeKey::Uid(e)],
        ActionConstraint::In(list) => list.into_iter().map(ScopeKey::Uid).collect(),
    }
}

/// The keys under which a request entity can find its policies: itself, its ancestors,
/// its type and `Any`.
pub(crate) fn request_keys<'a>(
    uid: &EntityUid,
    ancestors: impl Iterator<Item = &'a EntityUid>,
    out: &mut Vec<ScopeKey>,
) {
    out.push(ScopeKey::Uid(uid.clone()));
    out.extend(ancestors.cloned().map(ScopeKey::Uid));
    out.push(ScopeKey::Type(uid.type_name().clone()));
    out.push(ScopeKey::Any);
}
