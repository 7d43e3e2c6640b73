//! Circuit breakers (HC-3) end to end, against the real binary: upstream failures open an
//! agent's breaker on that tool (calls refused without being forwarded), a probe after the
//! open period closes it once the upstream is back; denials open it too, repeated incidents
//! demote the agent in the registry and for the token it already holds, and only a person
//! raises it again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{eventually, reason};

use std::time::Duration;

use common::env::Env;
use serde_json::{Value, json};
use warden_core::AutonomyLevel;
use warden_testkit::DemoOptions;

const BREAKERS: &str = "[breakers]\nfailures = 3\ndenials = 3\nagent_denials = 50\n\
                        open_secs = 1\nmax_open_secs = 4\ndemote_after = 2\n";

fn message(r: &Result<Value, warden_client::ClientError>) -> String {
    r.as_ref().unwrap()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn events(env: &Env, name: &str) -> Vec<Value> {
    env.audit_events(name)
        .into_iter()
        .map(|r| r["record"].clone())
        .collect()
}

#[test]
fn upstream_failures_open_the_breaker_and_a_probe_closes_it_when_the_upstream_is_back() {
    // A tool server that is down at first: a port nobody listens on (yet).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let flaky = format!("[upstreams.flaky]\nurl = \"http://127.0.0.1:{port}/crm/mcp\"\n{BREAKERS}");
    let policy = r#"
@id("assistant-flaky")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"call_tool",
        resource == Warden::Tool::"flaky/read_contact");
"#;
    let env = Env::start_with(&flaky, policy);
    let mut s = env.session("assistant", "flaky", &["read_contact"], "2026-07-28");
    let call =
        |s: &mut warden_client::mcp::McpSession| s.call_tool("read_contact", json!({"id": "c-1"}));
    for _ in 0..3 {
        assert_eq!(reason(&call(&mut s)), "upstream_failed");
    }
    // Open: refused before anything is decided or forwarded, saying why and when.
    let r = call(&mut s);
    assert_eq!(reason(&r), "circuit_open", "{r:?}");
    let m = message(&r);
    assert!(
        m.contains("3 consecutive upstream failures") && m.contains("retry in"),
        "{m}"
    );
    // The breaker is per tool and per agent: the same agent's other tools are not touched.
    let mut crm = env.session("assistant", "crm", &["read_contact"], "2026-07-28");
    assert_eq!(
        reason(&crm.call_tool("read_contact", json!({"id": "c-1"}))),
        "ok"
    );

    let out = env.cli(&["breakers", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = listed["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == "flaky/read_contact")
        .unwrap()
        .clone();
    assert_eq!(
        (b["agent"].as_str(), b["state"].as_str()),
        (Some("assistant"), Some("open"))
    );
    let table = env.cli(&["breakers", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("3 failures"));

    // The upstream comes back. While the breaker is open nothing reaches it.
    let (_rt, back) = common::demo_server(&format!("127.0.0.1:{port}"), DemoOptions::default());
    assert_eq!(reason(&call(&mut s)), "circuit_open");
    assert_eq!(back.stats.requests("crm"), 0);
    // After open_secs a probe goes through, succeeds, and closes the breaker.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(reason(&call(&mut s)), "ok");
    assert_eq!(reason(&call(&mut s)), "ok");
    assert_eq!(back.stats.calls("crm"), 2);

    let opened = eventually("breaker_opened", || {
        events(&env, "breaker_opened").into_iter().next()
    });
    assert_eq!(opened["agent"], "assistant");
    assert_eq!(opened["actor"], "warden/breakers");
    assert_eq!(opened["details"]["scope"], "flaky/read_contact");
    assert_eq!(opened["details"]["cause"], "failures");
    assert_eq!(opened["details"]["count"], 3);
}

#[test]
fn repeated_denials_demote_the_agent_at_once_and_only_a_person_raises_it() {
    // Interns may not read contacts: what a demotion of `other` (a junior) takes away.
    let policy = r#"
@id("no-interns-on-contacts")
forbid (principal, action, resource == Warden::Tool::"crm/read_contact")
when { context.autonomy_rank < 1 };

@id("secret-contact")
forbid (principal, action, resource == Warden::Tool::"crm/read_contact")
when { context.arguments has id && context.arguments.id == "c-secret" };
"#;
    let env = Env::start_with(BREAKERS, policy);
    let mut s = env.session("other", "crm", &["read_contact"], "2026-07-28");
    let read = |s: &mut warden_client::mcp::McpSession, id: &str| {
        reason(&s.call_tool("read_contact", json!({ "id": id })))
    };
    assert_eq!(read(&mut s, "c-1"), "ok");
    // Three policy denials on one tool open its breaker (incident 1): even an allowed call
    // is refused now.
    for _ in 0..3 {
        assert_eq!(read(&mut s, "c-secret"), "policy_denied");
    }
    let r = s.call_tool("read_contact", json!({"id": "c-1"}));
    assert_eq!(reason(&r), "circuit_open");
    assert!(message(&r).contains("after 3 denials"), "{}", message(&r));
    // After open_secs an allowed probe closes it.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(read(&mut s, "c-1"), "ok");
    assert_eq!(read(&mut s, "c-1"), "ok");
    // Three calls outside the task open a second one (incident 2): demoted, junior -> intern.
    for _ in 0..3 {
        assert_eq!(
            reason(&s.call_tool("log_call_note", json!({"id": "c-1", "note": "x"}))),
            "not_in_task"
        );
    }
    let admin = env.warden.admin();
    eventually("the demotion", || {
        (admin.agent("other").unwrap().autonomy == AutonomyLevel::Intern).then_some(())
    });
    // The token the agent already holds acts as an intern now.
    assert_eq!(
        reason(&s.call_tool("read_contact", json!({"id": "c-1"}))),
        "policy_denied"
    );
    let demoted = eventually("autonomy_demoted", || {
        events(&env, "autonomy_demoted").into_iter().next()
    });
    assert_eq!(demoted["agent"], "other");
    assert_eq!(demoted["details"]["from"], "junior");
    assert_eq!(demoted["details"]["to"], "intern");
    assert_eq!(demoted["details"]["incidents"], 2);
    // Time alone does not undo a demotion (the breakers close, the level stays).
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        reason(&s.call_tool("read_contact", json!({"id": "c-1"}))),
        "policy_denied"
    );

    // A person resets the breakers and raises the agent again: the same token works.
    let out = env.cli(&["breakers", "reset", "other", "--reason", "prompt fixed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("warden agent autonomy other"));
    admin.set_autonomy("other", AutonomyLevel::Junior).unwrap();
    assert_eq!(
        reason(&s.call_tool("read_contact", json!({"id": "c-1"}))),
        "ok"
    );
    let reset = eventually("breaker_reset", || {
        events(&env, "breaker_reset").into_iter().next()
    });
    assert_eq!(reset["reason"], "prompt fixed");
    // Resetting needs a reason.
    let out = env.cli(&["breakers", "reset", "other", "--reason", " "]);
    assert!(!out.status.success());
}
