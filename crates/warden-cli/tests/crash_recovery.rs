//! Crash recovery (issue 9): `kill -9` of the real binary under load at random moments,
//! many times over the same data directory. After every restart: no call a client saw
//! answered lacks its audit record, the log verifies, a kill and a revocation made before a
//! crash are still in force, and an approval spent before a crash cannot be spent again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::env::{Env, UPSTREAM_SECRET};
use common::{Warden, eventually, reason, warden};
use serde_json::json;
use warden_client::mcp::McpSession;
use warden_client::{AdminClient, AgentClient, TaskRequest};
use warden_identity::KeyPair;

/// Kills per run; `WARDEN_CRASH_ROUNDS=50` for a longer run.
fn rounds() -> u64 {
    std::env::var("WARDEN_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn session(url: &str, agent: &str, key: &KeyPair, tool: &str) -> McpSession {
    let client = AgentClient::new(url, agent, key.clone());
    let (server, _) = tool.split_once('/').unwrap();
    let resource = format!("{url}/mcp/{server}");
    let token = client
        .token(&resource, &TaskRequest::new("t-1", "crash").call_tool(tool))
        .unwrap();
    McpSession::new(client, &resource, &token.access_token, "2026-07-28")
}

/// Every `decision` record's argument `id`s, read offline from the data directory.
fn recorded_ids(data: &Path) -> HashSet<String> {
    common::audit_query(data, &["--kind", "decision", "--limit", "1000000"])
        .iter()
        .filter_map(|r| r["record"]["args"]["id"].as_str().map(str::to_owned))
        .collect()
}

/// A small xorshift: the kill moments are random but reproducible from the printed seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn repeated_kill9_under_load_loses_nothing_acknowledged() {
    let env = Env::start();
    let secret = env.warden.admin_secret();
    let data = env.data_dir();
    let config = env._dir.path().join("warden.toml");
    let stats = env.stats();
    let Env {
        warden: first,
        keys,
        demo: _demo,
        _rt,
        _dir,
    } = env;
    let mut w: Warden = first;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill moments seed: {seed}");
    let mut acknowledged_total = 0usize;
    let mut spent_approval: Option<String> = None;
    let mut finance_calls_after_spend = 0;

    let rounds = rounds();
    for round in 0..rounds {
        let admin = AdminClient::new(&w.url, &secret);
        // What earlier rounds made durable is still in force.
        if round > 1 {
            let client = AgentClient::new(&w.url, "other", keys["other"].clone());
            let r = client.token(
                &format!("{}/mcp/crm", w.url),
                &TaskRequest::new("t-1", "x").call_tool("crm/read_contact"),
            );
            assert!(
                r.is_err(),
                "round {round}: the killed agent got a token back"
            );
            let revs = admin.revocations().unwrap().to_string();
            assert!(revs.contains("task-from-round-1"), "round {round}: {revs}");
        }
        if let Some(id) = &spent_approval {
            let mut s = session(
                &w.url,
                "assistant",
                &keys["assistant"],
                "finance/transfer_funds",
            );
            let r = s.request(
                "tools/call",
                json!({"name": "transfer_funds", "arguments": {"amount": 5000, "to": "DE89-payee"},
                       "_meta": {"warden/approval": id}}),
            );
            assert_eq!(reason(&r), "approval_used", "round {round}: {r:?}");
            assert_eq!(stats.calls("finance"), finance_calls_after_spend);
        }
        // State changes acknowledged just before this round's crash.
        if round == 1 {
            admin.kill("other", "forced", "crash test").unwrap();
            admin
                .revoke("task", "task-from-round-1", "crash test")
                .unwrap();
        }
        if round == 2 {
            let mut s = session(
                &w.url,
                "assistant",
                &keys["assistant"],
                "finance/transfer_funds",
            );
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(s.call_tool(
                    "transfer_funds",
                    json!({"amount": 5000, "to": "DE89-payee"}),
                ));
            });
            // Only a sponsor of the agent may approve.
            let alice = AdminClient::new(&w.url, &admin.create_admin("alice@example.com").unwrap());
            let id = eventually("an approval request", || {
                let v = alice.approvals(Some("pending"), None).ok()?;
                v.as_array()?.first()?["id"].as_str().map(str::to_owned)
            });
            alice.decide_approval(&id, true, "checked").unwrap();
            let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(reason(&r), "ok", "{r:?}");
            finance_calls_after_spend = stats.calls("finance");
            spent_approval = Some(id);
        }

        // Load, then kill -9 at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|i| {
                let s = session(&w.url, "assistant", &keys["assistant"], "crm/read_contact");
                common::read_contacts_until(s, format!("r{round}-w{i}"), Arc::clone(&stop))
            })
            .collect();
        let wait = 200 + next(&mut seed) % 1300;
        std::thread::sleep(Duration::from_millis(wait));
        w.kill9();
        stop.store(true, Ordering::Relaxed);
        let acknowledged: Vec<String> = workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert!(!acknowledged.is_empty(), "round {round}: no load");
        acknowledged_total += acknowledged.len();

        let recorded = recorded_ids(&data);
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !recorded.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round} (killed after {wait} ms): {} acknowledged calls without a record: {missing:?}",
            missing.len()
        );
        let v = common::audit_verify(&data);
        // The writer signs a checkpoint over a crash's tail at the next start; the records
        // themselves must verify now.
        assert!(
            v.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        w = Warden::start_with(
            warden()
                .args(["serve", "--config"])
                .arg(&config)
                .env("WARDEN_DATA_DIR", &data)
                .env("DEMO_UPSTREAM_TOKEN", UPSTREAM_SECRET),
        );
    }
    w.terminate();
    let v = common::audit_verify(&data);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    println!("{rounds} kills, {acknowledged_total} acknowledged calls, none without a record");
}
