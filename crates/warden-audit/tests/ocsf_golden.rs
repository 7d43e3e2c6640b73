//! OCSF export golden files: a fixed set of records (an allowed and a denied tool call, an
//! upstream outcome, an agent lifecycle event, a policy load, an audit gap) must export to
//! exactly `tests/golden/ocsf.jsonl`. Regenerate after a deliberate mapping change with
//! `UPDATE_GOLDEN=1 cargo test -p warden-audit --test ocsf_golden` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::{Value, json};
use warden_audit::export::ocsf_line;
use warden_audit::query::Entry;
use warden_audit::record::{DecisionRecord, EventRecord, OutcomeRecord, Record};

fn records() -> Vec<Record> {
    let call = DecisionRecord {
        time_ms: 1_795_510_800_000,
        endpoint: "mcp".into(),
        via: "token".into(),
        agent: Some("research-agent".into()),
        sponsors: vec!["alice@example.com".into()],
        on_behalf_of: Some("bob@example.com".into()),
        delegation: vec!["planner".into()],
        task: Some("t-42".into()),
        token_id: Some("tok-1".into()),
        action: "call_tool".into(),
        resource: "crm/read_contact".into(),
        args_digest: Some("ab".repeat(32)),
        args: Some(json!({"id": "c-1"})),
        decision: "allow".into(),
        reason_id: "allowed".into(),
        policies: vec!["crm-read".into()],
        policy_version: "sha256:3f2a".into(),
        reasons: vec!["research agents read contacts".into()],
        stated_reason: Some("renewal email".into()),
        latency_us: 41,
        ..DecisionRecord::default()
    };
    let denied = DecisionRecord {
        time_ms: 1_795_510_801_000,
        action: "call_tool".into(),
        resource: "finance/transfer_funds".into(),
        decision: "deny".into(),
        reason_id: "policy_denied".into(),
        policies: vec!["transfer-cap".into()],
        reasons: vec!["no agent transfers more than 10000".into()],
        args: Some(json!({"amount": 50000})),
        ..call.clone()
    };
    vec![
        Record::Decision(Box::new(call)),
        Record::Outcome(OutcomeRecord {
            time_ms: 1_795_510_800_020,
            decision_seq: 0,
            agent: Some("research-agent".into()),
            resource: "crm/read_contact".into(),
            status: "ok".into(),
            http_status: Some(200),
            latency_us: 1800,
            findings: Vec::new(),
        }),
        Record::Decision(Box::new(denied)),
        Record::Event(
            EventRecord::new(1_795_510_700_000, "agent_created", "admin")
                .agent("research-agent")
                .detail("sponsors", json!(["alice@example.com"])),
        ),
        Record::Event(
            EventRecord::new(1_795_510_600_000, "policy_loaded", "warden")
                .detail("policy_version", "sha256:3f2a"),
        ),
        Record::Event(
            EventRecord::new(1_795_510_900_000, "audit_gap", "warden")
                .reason("the audit log could not be written")
                .detail("lost_records", 3),
        ),
    ]
}

#[test]
fn ocsf_export_matches_the_golden_file() {
    let got: String = records()
        .iter()
        .enumerate()
        .map(|(seq, r)| {
            let e = Entry {
                seq: seq as u64,
                record: serde_json::to_value(r).unwrap(),
            };
            format!("{}\n", ocsf_line(&e))
        })
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ocsf.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        got, want,
        "OCSF export changed; see the module doc to update"
    );
    // And the classes a SIEM routes on.
    let classes: Vec<u64> = got
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["class_uid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(classes, [6003, 6003, 6003, 3001, 6002, 6002]);
}
