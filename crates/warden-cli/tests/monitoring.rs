//! The behavioural monitor (MO-1, KS-1) end to end, against the real binary: an agent
//! learns a baseline from its calls; when it reaches for tools and servers it never used,
//! its risk rises — policies read it as `context.risk` — an alert is audited, stored,
//! listed and sent to a signed webhook (retried after a failure), and past the quarantine
//! threshold the agent is stopped (the call that took it there included) until a person
//! resumes it. The baseline survives a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{eventually, reason};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::env::Env;
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "hook-secret-42";

/// A webhook receiver on loopback: answers its first request with HTTP 500 (so Warden
/// must retry), the rest with 204; sends each request's headers and body.
/// One request the receiver got: its headers (names lower-cased) and body.
type Delivery = (Vec<(String, String)>, Vec<u8>);

fn receiver() -> (String, mpsc::Receiver<Delivery>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/warden", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let status = if n == 0 { "500 Oops" } else { "204 No Content" };
            write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            if n > 0 && tx.send((headers, body)).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn json_out(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_agent_straying_from_its_baseline_is_alerted_on_and_quarantined_until_resumed() {
    let (hook, deliveries) = receiver();
    let config = format!(
        "[monitor]\nmin_operations = 20\nalert_at = 40\nquarantine_at = 80\npersist_secs = 1\n\
         [monitor.webhook]\nurl = \"{hook}\"\nsecret = {{ env = \"HOOK_SECRET\" }}\nretries = 3\n"
    );
    let policies = r#"
@id("assistant-docs")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"call_tool",
        resource == Warden::Tool::"docs/read");

@id("risky-agents-do-not-export")
@reason("an agent whose risk score is 20 or more may not export contacts")
forbid (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"crm/export_contacts")
when { context.risk >= 20 };
"#;
    let env = Env::start_with_env(&config, policies, &[("HOOK_SECRET", WEBHOOK_SECRET)]);
    let mut crm = env.session(
        "assistant",
        "crm",
        &["read_contact", "export_contacts"],
        "2026-07-28",
    );
    // Learning: 25 ordinary calls make a trusted baseline (min_operations = 20).
    for _ in 0..25 {
        assert_eq!(
            reason(&crm.call_tool("read_contact", json!({"id": "c-1"}))),
            "ok"
        );
    }
    // A tool never used: allowed (risk 0 when decided), and the risk is now 20 ...
    assert_eq!(reason(&crm.call_tool("export_contacts", json!({}))), "ok");
    // ... which the policy reads: the same call is now refused.
    let again = crm.call_tool("export_contacts", json!({}));
    assert_eq!(reason(&again), "policy_denied", "{again:?}");
    assert!(
        again.unwrap()["error"]["data"]["policies"]
            .to_string()
            .contains("risky-agents-do-not-export")
    );
    // A new server and tool: +45 → 65, an alert.
    let mut finance = env.session("assistant", "finance", &["transfer_funds"], "2026-07-28");
    assert_eq!(
        reason(&finance.call_tool("transfer_funds", json!({"amount": 10, "to": "acct-1"}))),
        "ok"
    );
    let alert = eventually("the anomaly_alert record", || {
        env.audit_events("anomaly_alert").into_iter().next()
    });
    assert_eq!(alert["record"]["agent"], "assistant");
    assert_eq!(alert["record"]["details"]["risk"], 65);
    let kinds = alert["record"]["details"]["signals"].to_string();
    assert!(
        kinds.contains("first_seen_server") && kinds.contains("first_seen_tool"),
        "{kinds}"
    );
    // Another: past 80, quarantined — this call does not run, and nothing after it.
    let mut docs = env.session("assistant", "docs", &["read"], "2026-07-28");
    let reads_before = env.stats().calls("docs");
    let r = docs.call_tool("read", json!({"path": "handbook.md"}));
    assert_eq!(reason(&r), "agent_quarantined", "{r:?}");
    assert_eq!(env.stats().calls("docs"), reads_before, "nothing forwarded");
    let after = crm.call_tool("read_contact", json!({"id": "c-1"}));
    assert!(
        reason(&after).contains("401"),
        "the token is revoked: {after:?}"
    );
    let q = eventually("the agent_quarantined record", || {
        env.audit_events("agent_quarantined").into_iter().next()
    });
    assert_eq!(q["record"]["actor"], "warden-monitor");
    // The registry says so: suspended, with the kill on record.
    let shown = json_out(&env.cli(&["agent", "show", "assistant", "--json"]));
    assert_eq!(shown["state"], "suspended", "{shown}");

    // The webhook got both (the first attempt failed and was retried), signed.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(deliveries.recv_timeout(Duration::from_secs(15)).unwrap());
    }
    for (headers, body) in &got {
        let h = |k: &str| headers.iter().find(|(n, _)| n == k).unwrap().1.clone();
        let sig = h("warden-signature");
        let t: i64 = sig
            .strip_prefix("t=")
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            sig,
            warden_gateway::monitoring::webhook::signature(WEBHOOK_SECRET.as_bytes(), t, body)
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["agent"], "assistant");
        assert_eq!(v["type"], h("warden-event"));
    }
    let types: Vec<String> = got
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        types.contains(&"anomaly_alert".into()) && types.contains(&"agent_quarantined".into()),
        "{types:?}"
    );

    // `warden alerts list` shows both, delivered.
    let listed = eventually("both alerts delivered", || {
        let v = json_out(&env.cli(&["alerts", "list", "--json"]));
        (v.as_array().unwrap().len() == 2
            && v.as_array()
                .unwrap()
                .iter()
                .all(|a| a["webhook"] == "delivered"))
        .then_some(v)
    });
    assert_eq!(listed[0]["action"], "alert");
    assert_eq!(listed[1]["action"], "quarantine");
    let table = env.cli(&["alerts", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("first_seen_server +25"));

    // The baseline, as tables and as JSON.
    let b = json_out(&env.cli(&["agent", "baseline", "assistant", "--json"]));
    assert_eq!(b["quarantined"], true);
    assert_eq!(b["risk"], 100);
    assert_eq!(b["profile"]["trusted"], true);
    assert_eq!(b["profile"]["tools"][0]["name"], "crm/read_contact");
    assert_eq!(b["profile"]["tools"][0]["calls"], 25);
    let tables = env.cli(&["agent", "baseline", "assistant"]);
    let text = String::from_utf8_lossy(&tables.stdout);
    assert!(
        text.contains("QUARANTINED") && text.contains("crm/read_contact"),
        "{text}"
    );
    let (_, metrics) = env.warden.get("/metrics");
    assert!(
        metrics.contains("warden_monitor_quarantines_total 1"),
        "{metrics}"
    );

    // A person releases it: new tokens work, and the risk starts from 0.
    let out = env.cli(&[
        "resume",
        "assistant",
        "--reason",
        "checked: a new integration",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut crm = env.session("assistant", "crm", &["read_contact"], "2026-07-28");
    assert_eq!(
        reason(&crm.call_tool("read_contact", json!({"id": "c-1"}))),
        "ok"
    );
    let b = json_out(&env.cli(&["agent", "baseline", "assistant", "--json"]));
    assert_eq!(
        (b["risk"].as_u64(), b["quarantined"].as_bool()),
        (Some(0), Some(false))
    );

    // The baseline survives a restart (written at shutdown; read here from the store).
    let data = env.data_dir();
    let Env { warden, .. } = env;
    warden.terminate();
    let out = common::warden()
        .args(["agent", "baseline", "assistant", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stored = json_out(&out);
    assert_eq!(stored["profile"]["tools"][0]["calls"], 26, "{stored}");
    assert_eq!(stored["quarantined"], false);
}

/// `warden simulate`: the trace simulator's attacks through the decision path — each
/// detected within 20 actions; normal work (over 10,000 actions) raises at most one false
/// alert per 10,000. Time is virtual, so the figures are deterministic for the seed.
#[test]
fn simulated_attacks_are_detected_and_normal_work_is_left_alone() {
    let out = common::warden()
        .args(["simulate", "--json", "--seed", "7"])
        .output()
        .unwrap();
    let r = json_out(&out);
    assert!(r["normal_actions"].as_u64().unwrap() >= 10_000, "{r}");
    assert!(r["false_alerts_per_10k"].as_f64().unwrap() <= 1.0, "{r}");
    assert_eq!(r["false_quarantines"], 0, "{r}");
    let attacks = r["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 4);
    for a in attacks {
        assert_eq!(a["detected"], true, "{a}");
        assert!(a["actions_to_alert"].as_u64().unwrap() <= 20, "{a}");
    }
    let table = common::warden()
        .args(["simulate", "--eval-days", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("compromised delegate") && text.contains("false alerts"),
        "{text}"
    );
}
