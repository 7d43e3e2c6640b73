//! The audit trail end to end (AU-1..AU-4): the real `warden` binary in front of the demo
//! tool servers; every MCP request leaves exactly one decision record, allowed calls their
//! outcome; `warden audit verify|query|prove|export` on the real `audit.db`, tampered with
//! as an attacker would; and a kill -9 under load loses nothing the client saw succeed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

use crate::common::env::Env;
use crate::common::warden;

fn audit(data: &Path, args: &[&str]) -> Output {
    warden()
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

fn records(data: &Path, args: &[&str]) -> Vec<Value> {
    crate::common::audit_query(data, args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Stops the server the way an operator does (SIGTERM): it finishes, writes its final
/// checkpoint, and exits.
fn stop(env: Env) -> tempfile::TempDir {
    let Env { warden, _dir, .. } = env;
    warden.terminate();
    _dir
}

#[test]
fn every_request_leaves_exactly_one_decision_record_and_the_log_verifies() {
    let env = Env::start();
    let data = env.data_dir();
    let before = env.stats().calls("crm");
    let mut s = env
        .session(
            "assistant",
            "crm",
            &["read_contact", "log_call_note"],
            "2026-07-28",
        )
        .with_reason("look up Ada for the renewal call");
    // Allowed, denied by policy (not permitted), refused by the task (not granted).
    let ok = s
        .call_tool(
            "read_contact",
            json!({"id": "c-1", "api_key": "sk-live-123", "account_number": "DE89370400440532013000"}),
        )
        .unwrap();
    assert!(ok.get("result").is_some(), "{ok}");
    let denied = s.call_tool("delete_record", json!({"id": "c-1"})).unwrap();
    assert!(denied.get("error").is_some(), "{denied}");
    let listed = s.request("tools/list", json!({})).unwrap();
    assert!(listed.get("result").is_some(), "{listed}");
    // Refused before any policy is asked: no token, then bad JSON with a good token.
    let (status, _, _) = env.warden.post(
        "/mcp/crm",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        &[],
    );
    assert_eq!(status, 401);
    let bad = s.post_raw(b"{not json", &[]).unwrap();
    assert_eq!(bad.status, 400, "{bad:?}");
    let forwarded = env.stats().calls("crm") - before;

    let dir = stop(env);
    let all = records(&data, &["--kind", "decision"]);
    let mcp: Vec<&Value> = all
        .iter()
        .filter(|r| r["record"]["endpoint"] == "mcp")
        .collect();
    let summary: Vec<String> = mcp
        .iter()
        .map(|r| {
            let r = &r["record"];
            format!(
                "{} {} {}",
                r["action"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
                r["reason_id"].as_str().unwrap()
            )
        })
        .collect();
    // One record per request Warden answered, in order; none twice.
    assert_eq!(
        summary,
        [
            "call_tool allow allowed",
            "call_tool deny not_in_task",
            "tools/list allow protocol",
            "request deny invalid_request",
            "request deny malformed_json",
        ],
        "{mcp:#?}"
    );
    // The token request that started the session is a decision too.
    let tokens: Vec<&Value> = all
        .iter()
        .filter(|r| r["record"]["endpoint"] == "token")
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert_eq!(tokens[0]["record"]["decision"], "allow");
    assert_eq!(tokens[0]["record"]["agent"], "assistant");
    // What the allowed call's record says (AU-1, ID-4).
    let allow = &mcp[0]["record"];
    assert_eq!(allow["agent"], "assistant");
    assert_eq!(allow["resource"], "crm/read_contact");
    assert_eq!(allow["stated_reason"], "look up Ada for the renewal call");
    assert_eq!(allow["policies"], json!(["assistant-crm"]));
    assert_eq!(allow["task"], "t-1");
    assert_eq!(allow["via"], "token");
    assert!(allow["sponsors"].as_array().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        allow["args"]["api_key"], "[redacted]",
        "secrets never reach the record"
    );
    assert_eq!(
        allow["args"]["account_number"], "[redacted]",
        "nor the names configured in [audit] redact_keys"
    );
    assert!(!mcp[0].to_string().contains("sk-live-123"));
    // Nor any file of the store: the databases and their write-ahead logs.
    for f in std::fs::read_dir(&data).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            let bytes = std::fs::read(&f).unwrap();
            for secret in [&b"sk-live-123"[..], b"DE89370400440532013000"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret),
                    "a seeded secret is in {}",
                    f.display()
                );
            }
        }
    }
    assert_eq!(allow["args_digest"].as_str().unwrap().len(), 64);
    assert!(
        allow["policy_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(mcp[3]["record"]["via"], "none");
    // Its outcome, and only forwarded calls have one.
    let outcomes = records(&data, &["--kind", "outcome"]);
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0]["record"]["decision_seq"], mcp[0]["seq"]);
    assert_eq!(outcomes[0]["record"]["status"], "ok");
    assert_eq!(forwarded, 1, "the allowed call was forwarded, and no other");
    // Lifecycle: the agents the test registered, the start, the policy set, the stop.
    let events = records(&data, &["--kind", "event"]);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["record"]["event"].as_str().unwrap())
        .collect();
    for want in [
        "server_started",
        "policy_loaded",
        "agent_created",
        "server_stopped",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }

    // Verify: everything under a signed checkpoint after a clean stop.
    let v = audit(&data, &["verify"]);
    assert!(v.status.success(), "{}{}", text(&v.stdout), text(&v.stderr));
    assert!(
        text(&v.stdout).contains("(0 records after the newest checkpoint"),
        "{}",
        text(&v.stdout)
    );

    // Query by agent and decision; the table groups by agent.
    let denies = records(&data, &["--agent", "assistant", "--decision", "deny"]);
    assert_eq!(denies.len(), 2, "{denies:#?}");
    let table = audit(&data, &["query", "--agent", "assistant"]);
    assert!(text(&table.stdout).contains("look up Ada for the renewal call"));

    // An inclusion proof, checked by the CLI before it prints it.
    let seq = mcp[0]["seq"].as_u64().unwrap().to_string();
    let p = audit(&data, &["prove", "--record", &seq]);
    assert!(p.status.success(), "{}", text(&p.stderr));
    assert!(text(&p.stdout).contains("(verified)"));

    // Export: JSON lines are the leaves themselves; OCSF events carry the classes.
    let jsonl = audit(&data, &["export"]);
    let lines: Vec<Value> = text(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), records(&data, &[]).len());
    let ocsf = audit(
        &data,
        &[
            "export",
            "--format",
            "ocsf",
            "--agent",
            "assistant",
            "--kind",
            "decision",
        ],
    );
    let events: Vec<Value> = text(&ocsf.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["class_uid"] == 6003 && e["actor"]["user"]["uid"] == "assistant")
    );
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["api"]["operation"] == "call_tool")
        .collect();
    assert_eq!(calls[0]["status"], "Success");
    assert_eq!(calls[1]["status"], "Failure");
    assert_eq!(calls[1]["status_detail"], "not_in_task");

    // Tampering with the real file: each is found and named.
    let tampered = |name: &str, sql: &str, expect: &str| {
        let copy = dir.path().join(name);
        std::fs::create_dir_all(copy.join("keys")).unwrap();
        // The database and its write-ahead log: together they are the store file.
        for f in ["audit.db", "audit.db-wal"] {
            if data.join(f).exists() {
                std::fs::copy(data.join(f), copy.join(f)).unwrap();
            }
        }
        std::fs::copy(
            data.join("keys/audit-ed25519.key"),
            copy.join("keys/audit-ed25519.key"),
        )
        .unwrap();
        rusqlite::Connection::open(copy.join("audit.db"))
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        let v = audit(&copy, &["verify"]);
        assert_eq!(v.status.code(), Some(1), "{name}: {}", text(&v.stdout));
        assert!(
            text(&v.stderr).contains(expect),
            "{name}: {}",
            text(&v.stderr)
        );
    };
    tampered(
        "changed",
        &format!("UPDATE records SET leaf = replace(leaf, 'allowed', 'allowee') WHERE seq = {seq}"),
        &format!("record {seq} was changed"),
    );
    tampered(
        "deleted",
        &format!("DELETE FROM records WHERE seq = {seq}"),
        &format!("record {seq} is missing"),
    );
    tampered(
        "swapped",
        &format!(
            "UPDATE records SET seq = -1 WHERE seq = {seq}; UPDATE records SET seq = {seq} WHERE seq = {seq} + 1; \
             UPDATE records SET seq = {seq} + 1 WHERE seq = -1;"
        ),
        &format!("record {seq} is out of place"),
    );
    tampered(
        "truncated",
        &format!("DELETE FROM records WHERE seq > {seq}"),
        "the log was cut",
    );
    tampered(
        "checkpoint",
        // One character of the signature, always changed (a replace() of a letter that
        // may not occur would sometimes change nothing).
        "UPDATE checkpoints SET note = substr(note, 1, length(note) - 6) || \
         CASE WHEN substr(note, length(note) - 5, 1) = 'Q' THEN 'R' ELSE 'Q' END || \
         substr(note, length(note) - 4) WHERE size = (SELECT MAX(size) FROM checkpoints)",
        "checkpoint",
    );
}

/// kill -9 while clients are calling: every call a client saw succeed has its record, the
/// log verifies after the restart, and no checkpoint was lost.
#[test]
fn a_kill_under_load_loses_no_acknowledged_record() {
    let env = Env::start();
    let data = env.data_dir();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let s = env.session("assistant", "crm", &["read_contact"], "2026-07-28");
            common::read_contacts_until(s, format!("w{i}"), std::sync::Arc::clone(&stop))
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let checkpoints_before: Vec<String> = {
        let db = rusqlite::Connection::open(data.join("audit.db")).unwrap();
        let mut st = db
            .prepare("SELECT note FROM checkpoints ORDER BY size")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let Env {
        warden,
        _dir,
        demo,
        _rt,
        keys,
    } = env;
    warden.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 20,
        "only {} calls before the kill",
        acknowledged.len()
    );

    // Every acknowledged call has its allow record (the argument digest names the call).
    let recorded: std::collections::HashSet<String> =
        records(&data, &["--kind", "decision", "--decision", "allow"])
            .iter()
            .filter_map(|r| r["record"]["args"]["id"].as_str().map(str::to_owned))
            .collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged calls without a record: {missing:?}",
        missing.len()
    );

    // Restart on the same data: the writer signs a checkpoint over the uncovered tail; the
    // log verifies; every checkpoint from before the kill is still there.
    drop((demo, _rt, keys));
    let w = crate::common::Warden::start(&["--listen", "127.0.0.1:0"], &data);
    w.terminate();
    let v = audit(&data, &["verify"]);
    assert!(v.status.success(), "{}{}", text(&v.stdout), text(&v.stderr));
    let db = rusqlite::Connection::open(data.join("audit.db")).unwrap();
    for note in &checkpoints_before {
        let n: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM checkpoints WHERE note = ?1",
                [note],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "checkpoint lost:\n{note}");
    }
    drop(_dir);
}

/// AU-3: when the audit log cannot be written, calls are refused (nothing reaches the
/// upstream), the metrics say so, and once it can be written again calls flow and the log
/// records the gap and still verifies.
#[test]
fn calls_are_refused_while_the_audit_log_cannot_be_written() {
    let env = Env::start();
    let data = env.data_dir();
    let mut s = env.session("assistant", "crm", &["read_contact"], "2026-07-28");
    assert!(
        s.call_tool("read_contact", json!({"id": "c-1"}))
            .unwrap()
            .get("result")
            .is_some()
    );

    // Another process holds the database's write lock past the writer's patience.
    let blocker = rusqlite::Connection::open(data.join("audit.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let before = env.stats().requests("crm");
    let refused = s.call_tool("read_contact", json!({"id": "c-2"})).unwrap();
    assert_eq!(
        refused["error"]["data"]["reason"], "audit_unavailable",
        "{refused}"
    );
    assert_eq!(
        env.stats().requests("crm"),
        before,
        "nothing forwarded without a record"
    );
    let (_, metrics) = env.warden.get("/metrics");
    assert!(metrics.contains("warden_audit_failing 1"), "{metrics}");
    assert!(
        !metrics.contains("warden_audit_write_failures_total 0"),
        "{metrics}"
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    let ok = s.call_tool("read_contact", json!({"id": "c-3"})).unwrap();
    assert!(ok.get("result").is_some(), "{ok}");
    let (_, metrics) = env.warden.get("/metrics");
    assert!(metrics.contains("warden_audit_failing 0"), "{metrics}");

    let _dir = stop(env);
    let gaps = records(&data, &["--kind", "event", "--decision", "audit_gap"]);
    assert_eq!(gaps.len(), 1, "{gaps:#?}");
    assert!(
        gaps[0]["record"]["details"]["lost_records"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let allowed: Vec<String> = records(&data, &["--kind", "decision", "--decision", "allow"])
        .iter()
        .filter_map(|r| r["record"]["args"]["id"].as_str().map(str::to_owned))
        .collect();
    assert!(allowed.contains(&"c-1".to_owned()) && allowed.contains(&"c-3".to_owned()));
    assert!(
        !allowed.contains(&"c-2".to_owned()),
        "the refused call is not an allow"
    );
    let v = audit(&data, &["verify"]);
    assert!(v.status.success(), "{}{}", text(&v.stdout), text(&v.stderr));
}
