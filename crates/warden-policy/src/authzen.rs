//! AuthZEN Authorization API 1.0: parsing requests and mapping them onto Cedar.
//!
//! Mapping (documented in `docs/authzen.md`):
//! * `subject` → principal `<ns>::<Type>::"<id>"`, `resource` → resource likewise, where
//!   `<Type>` is the AuthZEN `type` mapped through [`Mapping::types`] (or used as is);
//! * `action.name` → `<ns>::Action::"<name>"`;
//! * `subject.properties` / `resource.properties` → attributes of those entities, merged
//!   under the attributes the entity store already has (the store wins on conflicts);
//! * `context` → the Cedar context, plus `context.action` = `action.properties` (`{}` when
//!   absent). A request `context` may not itself use the key `action`.
//!
//! Parsing is strict about types and required fields (HTTP 400) and ignores unknown fields,
//! as the specification requires.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};
use warden_core::Decision;

use crate::snapshot::{PolicySnapshot, Query, SuppliedEntity, guarded};
use crate::value;

/// How AuthZEN names map onto Cedar names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    /// Cedar namespace of the mapped types and actions (e.g. `Todo`); none: unqualified.
    pub namespace: Option<String>,
    /// AuthZEN `type` → Cedar entity type name (unqualified), e.g. `user` → `User`.
    pub types: HashMap<String, String>,
}

impl Mapping {
    fn qualify(&self, name: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}::{name}"),
            None => name.to_owned(),
        }
    }

    fn entity_type(&self, authzen_type: &str) -> Result<EntityTypeName, String> {
        let name = self
            .types
            .get(authzen_type)
            .map_or(authzen_type, String::as_str);
        EntityTypeName::from_str(&self.qualify(name))
            .map_err(|_| format!("type `{authzen_type}` is not a valid Cedar entity type name"))
    }

    fn action(&self, name: &str) -> Result<EntityUid, String> {
        let ty = EntityTypeName::from_str(&self.qualify("Action"))
            .map_err(|e| format!("namespace: {e}"))?;
        Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(name)))
    }
}

/// A malformed AuthZEN request: HTTP 400, with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// A subject or resource.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRef {
    pub ty: String,
    pub id: String,
    pub properties: Option<Map<String, Value>>,
}

/// An action.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRef {
    pub name: String,
    pub properties: Option<Map<String, Value>>,
}

/// One complete access evaluation request.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub subject: EntityRef,
    pub action: ActionRef,
    pub resource: EntityRef,
    pub context: Option<Map<String, Value>>,
}

/// `options.evaluations_semantic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantic {
    #[default]
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// An `evaluations` request: top-level defaults and the items (each complete once merged,
/// or an error of its own).
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// No (or an empty) `evaluations` array: a single evaluation, answered as one.
    Single(Box<Evaluation>),
    Many {
        items: Vec<Result<Evaluation, BadRequest>>,
        semantic: Semantic,
    },
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, BadRequest> {
    v.as_object()
        .ok_or_else(|| BadRequest(format!("`{what}` must be a JSON object")))
}

fn string(m: &Map<String, Value>, key: &str, what: &str) -> Result<String, BadRequest> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(BadRequest(format!("`{what}.{key}` must be a string"))),
        None => Err(BadRequest(format!("`{what}.{key}` is required"))),
    }
}

fn properties(
    m: &Map<String, Value>,
    what: &str,
) -> Result<Option<Map<String, Value>>, BadRequest> {
    match m.get("properties") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(p)) => Ok(Some(p.clone())),
        Some(_) => Err(BadRequest(format!(
            "`{what}.properties` must be a JSON object"
        ))),
    }
}

fn entity(v: &Value, what: &str) -> Result<EntityRef, BadRequest> {
    let m = object(v, what)?;
    Ok(EntityRef {
        ty: string(m, "type", what)?,
        id: string(m, "id", what)?,
        properties: properties(m, what)?,
    })
}

fn action(v: &Value) -> Result<ActionRef, BadRequest> {
    let m = object(v, "action")?;
    Ok(ActionRef {
        name: string(m, "name", "action")?,
        properties: properties(m, "action")?,
    })
}

fn context(v: Option<&Value>) -> Result<Option<Map<String, Value>>, BadRequest> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(_) => Err(BadRequest("`context` must be a JSON object".into())),
    }
}

fn required<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a Value, BadRequest> {
    m.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| BadRequest(format!("`{key}` is required")))
}

/// Parses an access evaluation request body.
pub fn parse_evaluation(body: &Value) -> Result<Evaluation, BadRequest> {
    let m = object(body, "request body")?;
    Ok(Evaluation {
        subject: entity(required(m, "subject")?, "subject")?,
        action: action(required(m, "action")?)?,
        resource: entity(required(m, "resource")?, "resource")?,
        context: context(m.get("context"))?,
    })
}

/// Parses an access evaluations (batch) request body. Top-level problems are a 400; an
/// item that is incomplete after merging the defaults fails alone.
pub fn parse_batch(body: &Value) -> Result<Batch, BadRequest> {
    let m = object(body, "request body")?;
    let items = match m.get("evaluations") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => return Err(BadRequest("`evaluations` must be an array".into())),
    };
    let Some(items) = items else {
        return parse_evaluation(body).map(|e| Batch::Single(Box::new(e)));
    };
    let semantic = match m.get("options").map(|o| object(o, "options")).transpose()? {
        None => Semantic::ExecuteAll,
        Some(o) => match o.get("evaluations_semantic") {
            None | Some(Value::Null) => Semantic::ExecuteAll,
            Some(Value::String(s)) => match s.as_str() {
                "execute_all" => Semantic::ExecuteAll,
                "deny_on_first_deny" => Semantic::DenyOnFirstDeny,
                "permit_on_first_permit" => Semantic::PermitOnFirstPermit,
                other => {
                    return Err(BadRequest(format!(
                        "unknown evaluations_semantic `{other}`; expected execute_all, \
                         deny_on_first_deny or permit_on_first_permit"
                    )));
                }
            },
            Some(_) => {
                return Err(BadRequest(
                    "`options.evaluations_semantic` must be a string".into(),
                ));
            }
        },
    };
    // Defaults must be well formed when present, even if every item overrides them.
    let default = |key: &str| m.get(key).filter(|v| !v.is_null());
    let d_subject = default("subject")
        .map(|v| entity(v, "subject"))
        .transpose()?;
    let d_action = default("action").map(action).transpose()?;
    let d_resource = default("resource")
        .map(|v| entity(v, "resource"))
        .transpose()?;
    let d_context = context(m.get("context"))?;
    let items = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |e: BadRequest| BadRequest(format!("evaluations[{i}]: {}", e.0));
            let im = object(item, "evaluation").map_err(at)?;
            let pick = |key: &str| im.get(key).filter(|v| !v.is_null());
            let subject = match pick("subject") {
                Some(v) => entity(v, "subject").map_err(at)?,
                None => d_subject
                    .clone()
                    .ok_or_else(|| at(BadRequest("`subject` is required".into())))?,
            };
            let act = match pick("action") {
                Some(v) => action(v).map_err(at)?,
                None => d_action
                    .clone()
                    .ok_or_else(|| at(BadRequest("`action` is required".into())))?,
            };
            let resource = match pick("resource") {
                Some(v) => entity(v, "resource").map_err(at)?,
                None => d_resource
                    .clone()
                    .ok_or_else(|| at(BadRequest("`resource` is required".into())))?,
            };
            let ctx = match pick("context") {
                Some(v) => context(Some(v)).map_err(at)?,
                None => d_context.clone(),
            };
            Ok(Evaluation {
                subject,
                action: act,
                resource,
                context: ctx,
            })
        })
        .collect();
    Ok(Batch::Many { items, semantic })
}

impl PolicySnapshot {
    /// Decides one AuthZEN evaluation. Mapping problems are a `Deny` that says why.
    pub fn evaluate_authzen(&self, mapping: &Mapping, e: &Evaluation) -> Decision {
        guarded(|| match self.authzen_query(mapping, e) {
            Ok(q) => self.decide(&q, None),
            Err(msg) => Decision::invalid_request(msg),
        })
    }

    fn authzen_query(&self, mapping: &Mapping, e: &Evaluation) -> Result<Query, String> {
        let principal = EntityUid::from_type_name_and_id(
            mapping.entity_type(&e.subject.ty)?,
            EntityId::new(&e.subject.id),
        );
        let resource = EntityUid::from_type_name_and_id(
            mapping.entity_type(&e.resource.ty)?,
            EntityId::new(&e.resource.id),
        );
        let action = mapping.action(&e.action.name)?;
        let mut supplied = Vec::new();
        for (uid, props, what) in [
            (&principal, &e.subject.properties, "subject"),
            (&resource, &e.resource.properties, "resource"),
        ] {
            if let Some(p) = props {
                supplied.push(SuppliedEntity {
                    uid: uid.clone(),
                    attrs: attributes(p, what)?,
                    parents: Vec::new(),
                });
            }
        }
        let mut pairs = match &e.context {
            Some(c) => attributes(c, "context")?,
            None => Vec::new(),
        };
        if pairs.iter().any(|(k, _)| k == "action") {
            return Err("context key `action` is reserved for action.properties".into());
        }
        let action_props = match &e.action.properties {
            Some(p) => {
                value::record_from_json(p, "action.properties").map_err(|e| e.to_string())?
            }
            None => RestrictedExpression::new_record([]).map_err(|e| e.to_string())?,
        };
        pairs.push(("action".into(), action_props));
        let context = Context::from_pairs(pairs).map_err(|e| format!("context: {e}"))?;
        Ok(Query {
            principal,
            action,
            resource,
            context,
            supplied,
        })
    }
}

fn attributes(
    m: &Map<String, Value>,
    what: &str,
) -> Result<Vec<(String, RestrictedExpression)>, String> {
    let mut out = Vec::with_capacity(m.len());
    for (k, v) in m {
        if let Some(e) = value::from_json(v, &format!("{what}.{k}")).map_err(|e| e.to_string())? {
            out.push((k.clone(), e));
        }
    }
    Ok(out)
}

/// Applies the batch semantic: which items to answer, in order.
pub fn answer_batch<F>(
    items: &[Result<Evaluation, BadRequest>],
    semantic: Semantic,
    mut decide: F,
) -> Vec<Result<Decision, BadRequest>>
where
    F: FnMut(&Evaluation) -> Decision,
{
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let answer = match item {
            Ok(e) => Ok(decide(e)),
            Err(bad) => Err(bad.clone()),
        };
        let allowed = matches!(&answer, Ok(d) if d.is_allowed());
        out.push(answer);
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allowed,
            Semantic::PermitOnFirstPermit => allowed,
        };
        if stop {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_and_mistyped_fields_are_bad_requests() {
        let ok = json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"}, "resource": {"type": "record", "id": "r1"}, "extra": 1});
        assert!(parse_evaluation(&ok).is_ok());
        for bad in [
            json!({"action": {"name": "read"}, "resource": {"type": "record", "id": "r1"}}),
            json!({"subject": {"id": "alice"}, "action": {"name": "read"}, "resource": {"type": "record", "id": "r1"}}),
            json!({"subject": {"type": "user", "id": "alice"}, "action": {}, "resource": {"type": "record", "id": "r1"}}),
            json!({"subject": "alice", "action": {"name": "read"}, "resource": {"type": "record", "id": "r1"}}),
            json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": 123}, "resource": {"type": "record", "id": "r1"}}),
            json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"}, "resource": {"type": "record"}}),
            json!([1, 2]),
        ] {
            assert!(parse_evaluation(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_items_inherit_whole_defaults_and_fail_alone() {
        let body = json!({
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "read"},
            "evaluations": [{"resource": {"type": "record", "id": "r1"}}, {}]
        });
        let Batch::Many { items, semantic } = parse_batch(&body).unwrap() else {
            panic!("expected many")
        };
        assert_eq!(semantic, Semantic::ExecuteAll);
        assert!(items[0].is_ok());
        assert!(items[1].as_ref().unwrap_err().0.contains("evaluations[1]"));
    }

    #[test]
    fn empty_evaluations_is_a_single_request() {
        let body = json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "r"}, "resource": {"type": "t", "id": "1"}, "evaluations": []});
        assert!(matches!(parse_batch(&body), Ok(Batch::Single(_))));
        assert!(parse_batch(&json!({"evaluations": "x"})).is_err());
        assert!(
            parse_batch(&json!({"evaluations": [{}], "options": {"evaluations_semantic": "nope"}}))
                .is_err()
        );
    }
}
