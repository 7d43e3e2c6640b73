//! Human checkpoints end to end (HC-1), against the real binary: a call that needs approval
//! is held until an approver decides; approve → exactly that call proceeds, deny → denied,
//! nobody → the timeout denies; the approval cannot be replayed for other arguments or
//! twice; an approver not allowed for the agent is refused; requests are rate-limited per
//! agent; every step is in the audit trail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::env::Env;
use common::warden;
use serde_json::{Value, json};

fn as_admin(env: &Env, secret: &str, args: &[&str]) -> std::process::Output {
    warden()
        .args(args)
        .args(["--server", &env.warden.url])
        .env("WARDEN_ADMIN_TOKEN", secret)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn reason_of(v: &Value) -> String {
    v["error"]["data"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Waits until `agent` has a pending approval request; returns it.
fn pending(env: &Env, secret: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = as_admin(env, secret, &["approvals", "list", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(a) = v.as_array().and_then(|a| a.first()) {
            return a.clone();
        }
        assert!(Instant::now() < deadline, "no approval request appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events(env: &Env) -> Vec<Value> {
    common::audit_query(&env.data_dir(), &[])
}

#[test]
fn approve_deny_timeout_replay_and_the_wrong_approver() {
    let env = Env::start();
    let admin = env.warden.admin();
    let alice = admin.create_admin("alice@example.com").unwrap();
    let mallory = admin.create_admin("mallory").unwrap();
    let transfer = |amount: i64, to: &str| {
        // Stateless: every request the demo server counts is a tool call.
        let mut s = env
            .session("assistant", "finance", &["transfer_funds"], "2026-07-28")
            .with_reason("paying invoice 42");
        let to = to.to_owned();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = s.call_tool("transfer_funds", json!({"amount": amount, "to": to}));
            tx.send(r.unwrap()).unwrap();
        });
        rx
    };
    let before = env.stats().calls("finance");

    // Approve: the held call proceeds, exactly once.
    let held = transfer(5000, "DE89370400440532013000");
    let req = pending(&env, &alice);
    let id = req["id"].as_str().unwrap().to_owned();
    assert_eq!(req["agent"], "assistant");
    assert_eq!(req["resource"], "finance/transfer_funds");
    assert_eq!(req["arguments"]["amount"], 5000);
    assert_eq!(req["stated_reason"], "paying invoice 42");
    assert_eq!(req["approvers"], json!(["alice@example.com"]));
    // The show view is a table with the call and why it needs approval.
    let out = as_admin(&env, &alice, &["approvals", "show", &id]);
    assert!(text(&out.stdout).contains("transfers above 1000 need a finance approver"));
    // Mallory is no approver of the assistant: refused, and the call stays held.
    let out = as_admin(
        &env,
        &mallory,
        &["approvals", "approve", &id, "--reason", "sure"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("may not decide"),
        "{}",
        text(&out.stderr)
    );
    assert!(held.try_recv().is_err());
    let out = as_admin(
        &env,
        &alice,
        &["approvals", "approve", &id, "--reason", "invoice checked"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = held.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("5000"),
        "{r}"
    );
    assert_eq!(env.stats().calls("finance"), before + 1);

    // The spent approval, presented again: once only; for other arguments: refused.
    let mut s = env.session("assistant", "finance", &["transfer_funds"], "2026-07-28");
    let present = |s: &mut warden_client::mcp::McpSession, amount: i64| {
        s.request(
            "tools/call",
            json!({"name": "transfer_funds",
                   "arguments": {"amount": amount, "to": "DE89370400440532013000"},
                   "_meta": {"warden/approval": id}}),
        )
        .unwrap()
    };
    assert_eq!(reason_of(&present(&mut s, 9000)), "approval_mismatch");
    assert_eq!(reason_of(&present(&mut s, 5000)), "approval_used");
    assert_eq!(env.stats().calls("finance"), before + 1);

    // Deny: the held call is refused with the approver's reason.
    let held = transfer(4000, "FR7630006000011234567890189");
    let id2 = pending(&env, &alice)["id"].as_str().unwrap().to_owned();
    let out = as_admin(
        &env,
        &alice,
        &["approvals", "deny", &id2, "--reason", "unknown payee"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = held.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(reason_of(&r), "approval_denied");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown payee")
    );

    // Nobody decides: the timeout (2 s in this config) denies.
    let started = Instant::now();
    let r = transfer(3000, "GB29NWBK60161331926819")
        .recv_timeout(Duration::from_secs(10))
        .unwrap();
    assert_eq!(reason_of(&r), "approval_timeout");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(env.stats().calls("finance"), before + 1);

    // Audited: who asked, who decided and why, who was refused; the call names its approval.
    let all = events(&env);
    let names: Vec<&str> = all
        .iter()
        .filter_map(|r| r["record"]["event"].as_str())
        .collect();
    for e in [
        "approval_requested",
        "approval_granted",
        "approval_denied",
        "approval_refused",
        "approval_expired",
        "approval_mismatch",
    ] {
        assert!(names.contains(&e), "{e} missing: {names:?}");
    }
    let granted = all
        .iter()
        .find(|r| r["record"]["event"] == "approval_granted")
        .unwrap();
    assert_eq!(granted["record"]["actor"], "alice@example.com");
    assert_eq!(granted["record"]["reason"], "invoice checked");
    let approved: Vec<&Value> = all
        .iter()
        .filter(|r| r["record"]["reason_id"] == "approved")
        .collect();
    assert_eq!(approved.len(), 1);
    assert!(
        approved[0]["record"]["reasons"]
            .to_string()
            .contains(&format!("approval {id}"))
    );
}

#[test]
fn an_agent_cannot_flood_its_approvers() {
    let env = Env::start();
    // Default: at most 3 pending per agent. Five different calls at once.
    let rx: Vec<_> = (0..5)
        .map(|i| {
            let mut s = env.session("assistant", "finance", &["transfer_funds"], "2026-07-28");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let r = s
                    .call_tool("transfer_funds", json!({"amount": 2000 + i, "to": "x"}))
                    .unwrap();
                tx.send(r).unwrap();
            });
            rx
        })
        .collect();
    let reasons: Vec<String> = rx
        .iter()
        .map(|r| reason_of(&r.recv_timeout(Duration::from_secs(10)).unwrap()))
        .collect();
    let limited = reasons
        .iter()
        .filter(|r| *r == "approval_rate_limited")
        .count();
    assert_eq!(limited, 2, "{reasons:?}");
    assert_eq!(
        reasons.iter().filter(|r| *r == "approval_timeout").count(),
        3,
        "{reasons:?}"
    );
}

/// A client that asked for progress (`_meta.progressToken`, SSE accepted) hears while its
/// call is held: `notifications/progress` naming the approval and the approvers, then the
/// call's answer on the same event stream.
#[test]
fn a_held_call_reports_progress_to_a_client_that_asks() {
    let env = Env::start();
    let alice = env
        .warden
        .admin()
        .create_admin("alice@example.com")
        .unwrap();
    let s = env.session("assistant", "finance", &["transfer_funds"], "2026-07-28");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "transfer_funds",
        "arguments": {"amount": 4000, "to": "DE89370400440532013000"},
        "_meta": {"progressToken": "p-42",
                  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let a = s
            .post_raw(
                body.to_string().as_bytes(),
                &[("Mcp-Method", "tools/call"), ("Mcp-Name", "transfer_funds")],
            )
            .unwrap();
        tx.send(a).unwrap();
    });
    let id = pending(&env, &alice)["id"].as_str().unwrap().to_owned();
    let out = as_admin(
        &env,
        &alice,
        &["approvals", "approve", &id, "--reason", "checked"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let a = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(a.status, 200);
    assert!(a.content_type.starts_with("text/event-stream"), "{a:?}");
    let messages = a.messages();
    let progress = &messages[0];
    assert_eq!(progress["method"], "notifications/progress", "{messages:?}");
    assert_eq!(progress["params"]["progressToken"], "p-42");
    assert_eq!(progress["params"]["total"], 2);
    let m = progress["params"]["message"].as_str().unwrap();
    assert!(m.contains(&id) && m.contains("alice@example.com"), "{m}");
    let answer = a.response_to(7).unwrap();
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("4000"),
        "{answer}"
    );
    // The same call without a progress token is answered as before: no event stream
    // is opened for it (it is held, then denied by the 2 s timeout here).
    let mut quiet = env.session("assistant", "finance", &["transfer_funds"], "2026-07-28");
    let r = quiet
        .call_tool(
            "transfer_funds",
            json!({"amount": 4001, "to": "DE89370400440532013000"}),
        )
        .unwrap();
    assert_eq!(reason_of(&r), "approval_timeout", "{r}");
}

/// AU-1: a client that gives up while its call is held leaves a decision record all the
/// same — a deny with reason `client_gone` for that call — and nothing reaches the tool.
#[test]
fn a_held_call_whose_client_goes_away_is_recorded() {
    let env = Env::start();
    let before = env.stats().calls("finance");
    let mut s = env
        .session("assistant", "finance", &["transfer_funds"], "2026-07-28")
        .with_timeout(Duration::from_millis(700));
    let gave_up = s.call_tool("transfer_funds", json!({"amount": 7000, "to": "x"}));
    assert!(gave_up.is_err(), "the call was held: {gave_up:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = loop {
        let found = events(&env).into_iter().find(|e| {
            e["record"]["reason_id"] == "client_gone"
                && e["record"]["resource"] == "finance/transfer_funds"
        });
        if let Some(e) = found {
            break e;
        }
        assert!(Instant::now() < deadline, "no record of the dropped call");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(gone["record"]["decision"], "deny", "{gone}");
    assert_eq!(gone["record"]["action"], "call_tool", "{gone}");
    assert_eq!(gone["record"]["agent"], "assistant", "{gone}");
    assert_eq!(env.stats().calls("finance"), before);
}
