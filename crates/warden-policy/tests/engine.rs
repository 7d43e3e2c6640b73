//! The Policy Engine's public behaviour: default deny, fail closed, errors with locations,
//! hot reload, and the scope index never changing a decision.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// scripts/fuzz.sh builds every test target of a fuzzed crate with coverage
// instrumentation; this links the libFuzzer runtime that instrumentation calls.
#[cfg(fuzzing)]
extern crate bolero as _;

use proptest::prelude::*;
use serde_json::json;
use warden_core::{ActionKind, AgentId, AutonomyLevel, Effect, RiskScore};
use warden_policy::authzen::{Mapping, parse_evaluation};
use warden_policy::{ActionRequest, Engine, PolicySnapshot, PolicySources, Reload, SourceFile};

const ARGS_SCHEMA: &str = "namespace Warden { type Arguments = { amount?: Long }; }";

fn sources(policies: &str, entities: &str) -> PolicySources {
    PolicySources {
        policies: vec![SourceFile::new("test.cedar", policies)],
        schemas: vec![SourceFile::new("args.cedarschema", ARGS_SCHEMA)],
        entities: vec![SourceFile::new("entities.json", entities)],
    }
}

fn request(agent: &str, resource: &str, args: serde_json::Value) -> ActionRequest {
    ActionRequest {
        agent: AgentId::new(agent).unwrap(),
        action: ActionKind::CallTool,
        resource: resource.into(),
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

#[test]
fn no_policies_deny_everything() {
    let snap = PolicySnapshot::deny_all().unwrap();
    for (agent, tool) in [
        ("a", "crm/get"),
        ("b", "billing/charge"),
        ("root", "shell/exec"),
    ] {
        let d = snap.evaluate(&request(agent, tool, json!({})));
        assert_eq!(d.effect, Effect::Deny);
        assert!(d.determining.is_empty());
        assert!(d.reasons[0].contains("default deny"), "{:?}", d.reasons);
    }
}

#[test]
fn unknown_tool_is_denied_with_a_reason() {
    let snap = PolicySnapshot::load(&sources(
        r#"permit(principal, action, resource == Warden::Tool::"crm/get");"#,
        "[]",
    ))
    .unwrap();
    assert_eq!(
        snap.evaluate(&request("a", "crm/get", json!({}))).effect,
        Effect::Allow
    );
    let d = snap.evaluate(&request("a", "crm/unknown_tool", json!({})));
    assert_eq!(d.effect, Effect::Deny);
    assert!(!d.reasons.is_empty());
}

#[test]
fn unknown_action_is_denied_with_a_reason() {
    let snap =
        PolicySnapshot::load(&sources("permit(principal, action, resource);", "[]")).unwrap();
    // Through AuthZEN, any action name can arrive.
    let e = parse_evaluation(&json!({
        "subject": {"type": "Agent", "id": "a"},
        "action": {"name": "drop_tables"},
        "resource": {"type": "Tool", "id": "db/x"}
    }))
    .unwrap();
    let mapping = Mapping {
        namespace: Some("Warden".into()),
        ..Default::default()
    };
    let d = snap.evaluate_authzen(&mapping, &e);
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.errors[0].message.contains("unknown action"), "{d:?}");
    // In a Warden request, an unknown action does not even parse.
    let bad = serde_json::from_value::<ActionRequest>(json!({
        "agent": "a", "action": "drop_tables", "resource": "db/x", "autonomy": "senior", "time": 0
    }));
    assert!(bad.is_err());
}

#[test]
fn malformed_context_is_denied_never_allowed() {
    let snap = PolicySnapshot::load(&sources(
        "permit(principal, action, resource);\n\
         forbid(principal, action, resource) when { context.arguments has amount && context.arguments.amount > 100 };",
        "[]",
    ))
    .unwrap();
    // A number Cedar cannot represent: the forbid cannot be evaluated, so deny.
    let d = snap.evaluate(&request("a", "bank/pay", json!({"amount": 1e300})));
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.errors[0].message.contains("arguments.amount"), "{d:?}");
    // A type the forbid does not expect: an evaluation error, so deny (Cedar alone would
    // skip the erroring forbid and allow).
    let d = snap.evaluate(&request("a", "bank/pay", json!({"amount": "5000"})));
    assert_eq!(d.effect, Effect::Deny);
    assert!(!d.errors.is_empty());
    // A resource that is not `server/tool`.
    let d = snap.evaluate(&request("a", "no-server", json!({})));
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.errors[0].message.contains("server/name"), "{d:?}");
    // A principal of the wrong type through AuthZEN.
    let e = parse_evaluation(&json!({
        "subject": {"type": "Tool", "id": "x/y"}, "action": {"name": "call_tool"},
        "resource": {"type": "Tool", "id": "db/x"}, "context": {"arguments": "not an object"}
    }))
    .unwrap();
    let mapping = Mapping {
        namespace: Some("Warden".into()),
        ..Default::default()
    };
    assert_eq!(snap.evaluate_authzen(&mapping, &e).effect, Effect::Deny);
}

#[test]
fn load_errors_name_file_line_and_reason() {
    let bad_syntax = sources(
        "permit(principal, action, resource);\n\nforbid(principal action, resource);\n",
        "[]",
    );
    let errs = PolicySnapshot::load(&bad_syntax).unwrap_err();
    assert_eq!(errs.0[0].file, "test.cedar");
    assert_eq!(errs.0[0].line, 3, "{errs}");

    let bad_type = sources(
        "permit(principal, action, resource);\n@id(\"typo\")\npermit(principal, action, resource) when { context.risk_score > 3 };\n",
        "[]",
    );
    let errs = PolicySnapshot::load(&bad_type).unwrap_err();
    assert_eq!(errs.0[0].line, 3, "{errs}");
    assert!(errs.0[0].message.contains("typo"), "{errs}");

    let typo_annotation = sources(
        "@aproval(\"x\")\npermit(principal, action, resource);",
        "[]",
    );
    let errs = PolicySnapshot::load(&typo_annotation).unwrap_err();
    assert!(
        errs.0[0].message.contains("unknown annotation `@aproval`"),
        "{errs}"
    );

    let approval_on_forbid = sources(
        "@approval(\"x\")\nforbid(principal, action, resource);",
        "[]",
    );
    assert!(PolicySnapshot::load(&approval_on_forbid).is_err());

    let dup = sources(
        "@id(\"x\")\npermit(principal, action, resource);\n@id(\"x\")\nforbid(principal, action, resource);",
        "[]",
    );
    let errs = PolicySnapshot::load(&dup).unwrap_err();
    assert!(
        errs.0[0].message.contains("duplicate policy id `x`"),
        "{errs}"
    );

    let bad_entities = sources(
        "",
        "[{\"uid\": {\"type\": \"Warden::Agent\", \"id\": \"a\"}, \"attrs\": {}, \"parents\": []}]",
    );
    let errs = PolicySnapshot::load(&bad_entities).unwrap_err();
    assert_eq!(errs.0[0].file, "entities.json", "{errs}");
}

#[test]
fn hot_reload_applies_valid_sets_and_keeps_the_old_one_on_error() {
    let engine = Engine::new(
        PolicySnapshot::load(&sources("permit(principal, action, resource);", "[]")).unwrap(),
    );
    let req = request("a", "crm/get", json!({}));
    assert_eq!(engine.evaluate(&req).effect, Effect::Allow);

    let deny = sources(
        "forbid(principal, action, resource);\npermit(principal, action, resource);",
        "[]",
    );
    assert!(matches!(engine.reload(&deny), Ok(Reload::Applied { .. })));
    assert_eq!(
        engine.evaluate(&req).effect,
        Effect::Deny,
        "the very next decision uses the new set"
    );
    assert!(matches!(engine.reload(&deny), Ok(Reload::Unchanged)));

    let version = engine.snapshot().version().to_owned();
    let broken = sources("permit(principal, action, resource", "[]");
    assert!(engine.reload(&broken).is_err());
    assert_eq!(engine.snapshot().version(), version);
    assert_eq!(
        engine.evaluate(&req).effect,
        Effect::Deny,
        "the running set stays"
    );
}

#[test]
fn approval_is_not_bypassed_by_a_broader_permit() {
    let snap = PolicySnapshot::load(&sources(
        "permit(principal, action, resource);\n\
         @approval(\"big\")\n@approvers(\"cfo, treasury\")\npermit(principal, action, resource) when { context.arguments has amount && context.arguments.amount > 10 };",
        "[]",
    ))
    .unwrap();
    assert_eq!(
        snap.evaluate(&request("a", "b/pay", json!({"amount": 5})))
            .effect,
        Effect::Allow
    );
    let d = snap.evaluate(&request("a", "b/pay", json!({"amount": 50})));
    assert_eq!(d.effect, Effect::RequireApproval);
    assert_eq!(d.approval.unwrap().approvers, vec!["cfo", "treasury"]);
}

// ---- property tests: random policy sets over a small world ----

const AGENTS: [&str; 4] = ["a0", "a1", "a2", "a3"];
const TOOLS: [&str; 4] = ["s0/t0", "s0/t1", "s1/t2", "s1/t3"];

fn world() -> String {
    json!([
        {"uid": {"type": "Warden::AgentGroup", "id": "g0"}, "attrs": {}, "parents": [{"type": "Warden::AgentGroup", "id": "g1"}]},
        {"uid": {"type": "Warden::Agent", "id": "a0"}, "attrs": {"name": "a0", "sponsor": {"type": "Warden::User", "id": "u"}}, "parents": [{"type": "Warden::AgentGroup", "id": "g0"}]},
        {"uid": {"type": "Warden::Agent", "id": "a1"}, "attrs": {"name": "a1", "sponsor": {"type": "Warden::User", "id": "u"}}, "parents": [{"type": "Warden::AgentGroup", "id": "g1"}]},
        {"uid": {"type": "Warden::Agent", "id": "a2"}, "attrs": {"name": "a2", "sponsor": {"type": "Warden::User", "id": "u"}}, "parents": []},
        {"uid": {"type": "Warden::Tool", "id": "s0/t0"}, "attrs": {}, "parents": [{"type": "Warden::ToolGroup", "id": "writes"}]},
        {"uid": {"type": "Warden::Tool", "id": "s1/t2"}, "attrs": {}, "parents": []}
    ])
    .to_string()
}

fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal".to_owned()),
        prop::sample::select(&AGENTS[..])
            .prop_map(|a| format!("principal == Warden::Agent::\"{a}\"")),
        prop::sample::select(&["g0", "g1"][..])
            .prop_map(|g| format!("principal in Warden::AgentGroup::\"{g}\"")),
        Just("principal is Warden::Agent".to_owned()),
        Just("principal is Warden::Agent in Warden::AgentGroup::\"g1\"".to_owned()),
    ]
}

fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("action".to_owned()),
        Just("action == Warden::Action::\"call_tool\"".to_owned()),
        Just(
            "action in [Warden::Action::\"call_tool\", Warden::Action::\"get_prompt\"]".to_owned()
        ),
        Just("action == Warden::Action::\"get_prompt\"".to_owned()),
    ]
}

fn resource() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("resource".to_owned()),
        prop::sample::select(&TOOLS[..]).prop_map(|t| format!("resource == Warden::Tool::\"{t}\"")),
        prop::sample::select(&["s0", "s1"][..])
            .prop_map(|s| format!("resource in Warden::ToolServer::\"{s}\"")),
        Just("resource in Warden::ToolGroup::\"writes\"".to_owned()),
        Just("resource is Warden::Tool".to_owned()),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (0i64..100).prop_map(|n| format!(" when {{ context.risk < {n} }}")),
        (0i64..100).prop_map(|n| format!(
            " when {{ context.arguments has amount && context.arguments.amount <= {n} }}"
        )),
        (0i64..100).prop_map(|n| format!(
            " unless {{ context.arguments has amount && context.arguments.amount > {n} }}"
        )),
    ]
}

fn policy(i: usize) -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        any::<bool>(),
        principal(),
        action(),
        resource(),
        condition(),
    )
        .prop_map(move |(permit, approval, p, a, r, c)| {
            let effect = if permit { "permit" } else { "forbid" };
            let ann = if permit && approval {
                "@approval(\"check\") "
            } else {
                ""
            };
            format!("@id(\"p{i}\") {ann}{effect}({p}, {a}, {r}){c};\n")
        })
}

fn policy_set(max: usize) -> impl Strategy<Value = String> {
    (0..max).prop_flat_map(|n| {
        (0..n)
            .map(policy)
            .collect::<Vec<_>>()
            .prop_map(|ps| ps.concat())
    })
}

fn any_request() -> impl Strategy<Value = ActionRequest> {
    (
        prop::sample::select(&["a0", "a1", "a2", "a3", "stranger"][..]),
        prop::sample::select(&["s0/t0", "s0/t1", "s1/t2", "s1/t3", "s2/new"][..]),
        prop::option::of(0i64..100),
        0i64..=100,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(agent, tool, amount, risk, prompt, as_text)| {
            // Amounts sent as text make conditions fail with evaluation errors.
            let args = match amount {
                None => json!({}),
                Some(a) if as_text => json!({"amount": a.to_string()}),
                Some(a) => json!({"amount": a}),
            };
            let mut r = request(agent, tool, args);
            r.risk = RiskScore::new(risk).unwrap();
            if prompt {
                r.action = ActionKind::GetPrompt;
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The scope index hands Cedar only the policies that can match; the decision (effect
    /// and determining policies, errors) must be exactly what Cedar decides over the whole set.
    #[test]
    fn sliced_decision_equals_unsliced(set in policy_set(24), reqs in prop::collection::vec(any_request(), 8)) {
        let snap = PolicySnapshot::load(&sources(&set, &world())).unwrap();
        for r in &reqs {
            let sliced = snap.evaluate(r);
            let unsliced = snap.evaluate_unsliced(r);
            prop_assert_eq!(&sliced.effect, &unsliced.effect, "{:?}\n{}", r, set);
            prop_assert_eq!(&sliced.determining, &unsliced.determining);
            prop_assert_eq!(&sliced.errors, &unsliced.errors);
        }
    }

    /// Adding a forbid can only take permissions away.
    #[test]
    fn adding_a_forbid_never_turns_deny_into_allow(
        set in policy_set(16),
        (p, a, r, c) in (principal(), action(), resource(), condition()),
        reqs in prop::collection::vec(any_request(), 8),
    ) {
        let before = PolicySnapshot::load(&sources(&set, &world())).unwrap();
        let with_forbid = format!("{set}@id(\"extra-forbid\") forbid({p}, {a}, {r}){c};\n");
        let after = PolicySnapshot::load(&sources(&with_forbid, &world())).unwrap();
        for req in &reqs {
            let b = before.evaluate(req).effect;
            let a = after.evaluate(req).effect;
            if b != Effect::Allow {
                prop_assert_ne!(a, Effect::Allow, "{:?}", req);
            }
            if b == Effect::Deny {
                prop_assert_eq!(a, Effect::Deny);
            }
        }
    }
}
