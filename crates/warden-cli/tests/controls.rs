//! Kill switch (KS-1..KS-3) and limits (HC-2) end to end, against the real binary and the demo tool
//! servers: a forced kill ends a long call in flight and an open event stream, denies the
//! agent's next call and its delegated child's, is audited, and a resume is explicit; a
//! graceful kill lets the call in flight finish; the drill measures and restores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Read as _;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::env::Env;
use common::warden;
use serde_json::{Value, json};
use warden_client::TaskRequest;
use warden_client::mcp::McpSession;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn denied(r: &Result<Value, warden_client::ClientError>) -> bool {
    match r {
        Ok(v) => v.get("result").is_none(),
        Err(_) => true,
    }
}

#[test]
fn a_forced_kill_ends_calls_in_flight_and_streams_and_stops_the_delegation_tree() {
    let env = Env::start();
    let mut s = env.session(
        "assistant",
        "crm",
        &["read_contact", "export_contacts"],
        "2025-11-25",
    );
    s.initialize().unwrap();
    assert!(!denied(&s.call_tool("read_contact", json!({"id": "c-1"}))));
    // A child the assistant delegated to.
    let child_client = env.agent("other");
    let child_token = child_client.exchange(s.token(), None).unwrap();
    let mut child = McpSession::new(
        child_client,
        &env.url("crm"),
        &child_token.access_token,
        "2026-07-28",
    );
    assert!(!denied(
        &child.call_tool("read_contact", json!({"id": "c-2"}))
    ));

    // An open event stream, and a long call in flight.
    let (stream_tx, stream_rx) = mpsc::channel();
    let streamer = s.clone();
    std::thread::spawn(move || {
        let (status, mut body) = streamer.open_stream().unwrap();
        assert_eq!(status, 200);
        let mut buf = [0u8; 256];
        while matches!(body.read(&mut buf), Ok(n) if n > 0) {}
        stream_tx.send(Instant::now()).unwrap();
    });
    let (call_tx, call_rx) = mpsc::channel();
    let mut long = s.clone();
    std::thread::spawn(move || {
        let r = long.call_tool("export_contacts", json!({"seconds": 20}));
        call_tx.send((Instant::now(), r)).unwrap();
    });
    std::thread::sleep(Duration::from_millis(500));

    let killed_at = Instant::now();
    let out = env.cli(&["kill", "assistant", "--force", "--reason", "runaway loop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Killed (forced): assistant"));

    // The call in flight is aborted with a precise error, long before its 20 s.
    let (ended, r) = call_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(ended.duration_since(killed_at) < Duration::from_secs(5));
    let v = r.unwrap();
    assert_eq!(v["error"]["data"]["reason"], "agent_killed", "{v}");
    // The stream is closed.
    stream_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    // The next call of the agent and of its delegated child: denied.
    assert!(denied(&s.call_tool("read_contact", json!({"id": "c-1"}))));
    assert!(denied(
        &child.call_tool("read_contact", json!({"id": "c-2"}))
    ));
    // And the agent cannot get new tokens while killed.
    let task = TaskRequest::new("t-2", "after the kill").call_tool("crm/read_contact");
    assert!(
        env.agent("assistant")
            .token(&env.url("crm"), &task)
            .is_err()
    );

    // Audited: the kill, with who, why and how.
    let kills = env.audit_events("agent_killed");
    assert_eq!(kills.len(), 1, "{kills:#?}");
    let k = &kills[0]["record"];
    assert_eq!(k["agent"], "assistant");
    assert_eq!(k["reason"], "runaway loop");
    assert_eq!(k["details"]["mode"], "forced");
    // The aborted call's outcome says so.
    let out = warden()
        .args([
            "audit",
            "query",
            "--json",
            "--kind",
            "outcome",
            "--data-dir",
        ])
        .arg(env.data_dir())
        .output()
        .unwrap();
    let outcomes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        outcomes.iter().any(|o| o["record"]["status"] == "aborted"),
        "{outcomes:#?}"
    );

    // Resume is explicit and audited; the old token stays dead, a new one works.
    let out = env.cli(&["resume", "assistant", "--reason", "loop fixed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(env.audit_events("agent_resumed").len(), 1);
    assert!(denied(&s.call_tool("read_contact", json!({"id": "c-1"}))));
    // At once, most likely within the kill's second: the new token is issued after it.
    let mut fresh = env.session("assistant", "crm", &["read_contact"], "2026-07-28");
    assert!(!denied(
        &fresh.call_tool("read_contact", json!({"id": "c-1"}))
    ));
}

#[test]
fn a_graceful_kill_lets_the_call_in_flight_finish_and_a_global_kill_needs_whom() {
    let env = Env::start();
    let s = env.session("assistant", "crm", &["export_contacts"], "2026-07-28");
    let (tx, rx) = mpsc::channel();
    let mut long = s.clone();
    std::thread::spawn(move || {
        tx.send(long.call_tool("export_contacts", json!({"seconds": 2})))
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(400));
    let out = env.cli(&[
        "kill",
        "assistant",
        "--graceful",
        "--reason",
        "end of shift",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert!(r.get("result").is_some(), "{r}");
    let mut s = s;
    assert!(denied(
        &s.call_tool("export_contacts", json!({"seconds": 0}))
    ));

    // No reason, no kill; the CLI names what is missing.
    let out = env.cli(&["kill", "other"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--reason"),
        "{}",
        text(&out.stderr)
    );
    // A sponsor's agents at once.
    let out = env.cli(&[
        "kill",
        "--sponsor",
        "alice@example.com",
        "--reason",
        "sponsor left",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["killed"].as_array().unwrap().len(), 3, "{v}");
    let task = TaskRequest::new("t-3", "after the kill").call_tool("crm/read_contact");
    assert!(env.agent("other").token(&env.url("crm"), &task).is_err());
}

#[test]
fn the_drill_kills_a_live_session_times_it_and_restores_the_agent() {
    let env = Env::start();
    let key = env._dir.path().join("assistant.jwk");
    env.keys["assistant"].write_private(&key).unwrap();
    let out = env.cli(&[
        "kill",
        "--drill",
        "assistant",
        "--agent-key",
        key.to_str().unwrap(),
        "--call",
        "crm/read_contact",
        "--args",
        r#"{"id":"c-1"}"#,
        "--rounds",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        env.warden.stderr.lock().unwrap()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rounds"], 2);
    assert!(v["kill_to_first_denied_call"]["p99_us"].as_u64().unwrap() > 0);
    assert!(v["kill_to_stream_closed"]["p99_us"].as_u64().unwrap() > 0);
    // Restored: the agent is active and gets new tokens.
    let a = env.warden.admin().agent("assistant").unwrap();
    assert_eq!(a.state.to_string(), "active");
    let mut s = env.session("assistant", "crm", &["read_contact"], "2026-07-28");
    assert!(!denied(&s.call_tool("read_contact", json!({"id": "c-1"}))));
    assert_eq!(env.audit_events("agent_killed").len(), 2);
}

/// HC-2 end to end: the test config caps `crm/log_call_note` at 3 per agent per hour.
#[test]
fn a_cap_denies_the_call_past_it_and_says_which_limit_and_when() {
    let env = Env::start();
    let mut s = env.session("assistant", "crm", &["log_call_note"], "2026-07-28");
    let note = |s: &mut McpSession| {
        s.call_tool(
            "log_call_note",
            json!({"contact_id": "c-1", "note": "called"}),
        )
        .unwrap()
    };
    let before = env.stats().calls("crm");
    for _ in 0..3 {
        let r = note(&mut s);
        assert!(r.get("result").is_some(), "{r}");
    }
    let r = note(&mut s);
    assert_eq!(r["error"]["data"]["reason"], "limit_exceeded", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("limit `call-notes` reached (3 of 3 per 3600 s)"),
        "{msg}"
    );
    assert!(msg.contains("resets in"), "{msg}");
    assert_eq!(env.stats().calls("crm"), before + 3);
    // Another agent has its own count.
    let mut other = env.session("other", "crm", &["read_contact"], "2026-07-28");
    assert!(!denied(
        &other.call_tool("read_contact", json!({"id": "c-1"}))
    ));
}

/// HC-2: limits are visible to policy (`context.limit_used`), so a policy can act before a
/// cap refuses.
#[test]
fn the_policy_sees_how_much_of_a_limit_is_used() {
    let policy = r#"
@id("notes-near-cap")
@reason("two thirds of the hourly call notes are used: the rest are kept for people")
forbid (principal, action, resource == Warden::Tool::"crm/log_call_note")
when { context.limit_used >= 66 };
"#;
    let env = Env::start_with("", policy);
    let mut s = env.session("assistant", "crm", &["log_call_note"], "2026-07-28");
    let mut note = || {
        s.call_tool(
            "log_call_note",
            json!({"contact_id": "c-1", "note": "called"}),
        )
        .unwrap()
    };
    // 0 % and 33 % used: allowed.
    for _ in 0..2 {
        let r = note();
        assert!(r.get("result").is_some(), "{r}");
    }
    // 66 % used: the policy refuses before the cap would.
    let r = note();
    assert_eq!(r["error"]["data"]["reason"], "policy_denied", "{r}");
    assert_eq!(r["error"]["data"]["policies"][0], "notes-near-cap", "{r}");
}

/// AU-1: a client that gives up while its call is being forwarded leaves an `aborted`
/// outcome after the call's allow, so the trail says the answer never reached the agent.
#[test]
fn a_forwarded_call_whose_client_goes_away_gets_an_aborted_outcome() {
    let env = Env::start();
    let mut s = env
        .session("assistant", "crm", &["export_contacts"], "2026-07-28")
        .with_timeout(Duration::from_millis(700));
    let gave_up = s.call_tool("export_contacts", json!({"seconds": 3}));
    assert!(gave_up.is_err(), "the call was still running: {gave_up:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let aborted = loop {
        let found = env.audit_records("outcome").into_iter().find(|o| {
            o["record"]["resource"] == "crm/export_contacts" && o["record"]["status"] == "aborted"
        });
        if let Some(o) = found {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "no outcome for the abandoned call"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // It completes the call's allow.
    let allow = env
        .audit_records("decision")
        .into_iter()
        .find(|d| d["seq"] == aborted["record"]["decision_seq"])
        .expect("the decision the outcome points at");
    assert_eq!(allow["record"]["resource"], "crm/export_contacts");
    assert_eq!(allow["record"]["decision"], "allow");
}
