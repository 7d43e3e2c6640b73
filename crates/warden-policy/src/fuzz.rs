//! Fuzz targets for policy files (Cedar policies, schema fragments, entity JSON) and
//! AuthZEN requests. `cargo test` replays `src/__fuzz__/` and runs random inputs for a
//! second each; `scripts/fuzz.sh` runs them coverage-guided. docs/SECURITY-TESTS.md.

use crate::authzen::{Batch, Mapping, answer_batch, parse_batch};
use crate::{ActionRequest, PolicySnapshot, PolicySources, SourceFile};
use serde_json::{Value, json};
use warden_core::{ActionKind, AgentId, AutonomyLevel, Effect, RiskScore};

const ARGS_SCHEMA: &str = "namespace Warden { type Arguments = { amount?: Long }; }";

fn request(args: Value) -> ActionRequest {
    ActionRequest {
        agent: AgentId::new("alice").unwrap(),
        action: ActionKind::CallTool,
        resource: "crm/read".into(),
        arguments: args.as_object().cloned().unwrap_or_default(),
        task: Default::default(),
        on_behalf_of: None,
        delegated_by: vec![],
        autonomy: AutonomyLevel::Senior,
        risk: RiskScore::new(0).unwrap(),
        limit_used: 0,
        time: 1_790_000_000,
        reason: None,
        inspection: Default::default(),
    }
}

/// A policy file, schema fragment or entity file with any text: a load error naming the
/// file, or a set that decides without panicking; a set that loads with no `permit` in
/// it allows nothing.
#[test]
fn policy_file() {
    bolero::check!().for_each(|input: &[u8]| {
        let Some((&kind, text)) = input.split_first() else {
            return;
        };
        let text = String::from_utf8_lossy(text).into_owned();
        let mut sources = PolicySources {
            policies: vec![SourceFile::new(
                "base.cedar",
                r#"permit(principal, action, resource == Warden::Tool::"crm/read");"#,
            )],
            schemas: vec![SourceFile::new("args.cedarschema", ARGS_SCHEMA)],
            entities: vec![],
        };
        let only_fuzzed_policies = kind % 3 == 0;
        match kind % 3 {
            0 => sources.policies = vec![SourceFile::new("fuzz.cedar", text.clone())],
            1 => sources
                .schemas
                .push(SourceFile::new("fuzz.cedarschema", text.clone())),
            _ => sources
                .entities
                .push(SourceFile::new("fuzz.entities.json", text.clone())),
        }
        let snap = match PolicySnapshot::load(&sources) {
            Ok(s) => s,
            Err(errors) => {
                assert!(!errors.0.is_empty(), "a failed load without a reason");
                return;
            }
        };
        for args in [json!({}), json!({"amount": 5}), json!({"amount": 1e300})] {
            let d = snap.evaluate(&request(args));
            if only_fuzzed_policies && !text.contains("permit") {
                assert_eq!(d.effect, Effect::Deny, "allowed without a permit: {text}");
            }
        }
    });
}

/// Any JSON body at the AuthZEN evaluation endpoints: a 400 with a reason, or decisions;
/// against a set that permits one subject one action on one resource, nothing else is ever
/// allowed, whatever the types, ids, properties or context.
#[test]
fn authzen_request() {
    let snap = PolicySnapshot::load(&PolicySources {
        policies: vec![SourceFile::new(
            "one.cedar",
            r#"permit(principal == Warden::Agent::"alice", action == Warden::Action::"call_tool", resource == Warden::Tool::"crm/read");
               forbid(principal, action, resource) when { context has arguments && context.arguments has amount && context.arguments.amount > 100 };"#,
        )],
        schemas: vec![SourceFile::new("args.cedarschema", ARGS_SCHEMA)],
        entities: vec![],
    })
    .unwrap();
    // A panic fails the test anyway: nothing is reused after one.
    let snap = std::panic::AssertUnwindSafe(snap);
    let mapping = Mapping {
        namespace: Some("Warden".into()),
        ..Default::default()
    };
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
            return;
        };
        let items = match parse_batch(&body) {
            Ok(Batch::Single(e)) => vec![Ok(*e)],
            Ok(Batch::Many { items, .. }) => items,
            Err(bad) => {
                assert!(!bad.0.is_empty());
                return;
            }
        };
        let evaluations: Vec<_> = items.into_iter().flatten().collect();
        let answers = answer_batch(
            &evaluations
                .iter()
                .map(|e| Ok(e.clone()))
                .collect::<Vec<_>>(),
            crate::authzen::Semantic::ExecuteAll,
            |e| snap.evaluate_authzen(&mapping, e),
        );
        for (e, a) in evaluations.iter().zip(answers) {
            let Ok(d) = a else { continue };
            if d.effect == Effect::Allow {
                assert_eq!(
                    (e.subject.ty.as_str(), e.subject.id.as_str()),
                    ("Agent", "alice")
                );
                assert_eq!(e.action.name, "call_tool");
                assert_eq!(
                    (e.resource.ty.as_str(), e.resource.id.as_str()),
                    ("Tool", "crm/read")
                );
                let amount = e
                    .context
                    .as_ref()
                    .and_then(|c| c.get("arguments"))
                    .and_then(|a| a.get("amount"));
                assert!(
                    amount.is_none_or(|a| a.as_i64().is_some_and(|n| n <= 100)),
                    "allowed with amount {amount:?}"
                );
            }
        }
    });
}
