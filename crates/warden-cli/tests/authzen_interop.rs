//! Replays every AuthZEN interop decision against the real server (PE-7), and checks the
//! protocol behaviour the AuthZEN 1.0 certification scenario asks of a PDP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Warden, repo_root, vectors};
use serde_json::{Value, json};

fn start(example: &str) -> (Warden, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let config = repo_root().join(format!("examples/{example}/warden.toml"));
    let w = Warden::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        data.path(),
    );
    (w, data)
}

fn replay(example: &str, vectors_file: &str) -> usize {
    let (w, _data) = start(example);
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors().join(vectors_file)).unwrap())
            .unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in cases["evaluation"].as_array().unwrap() {
        let (status, body) = w.post_json("/access/v1/evaluation", &case["request"]);
        assert_eq!(status, 200, "{}", case["request"]);
        if body["decision"] != case["expected"] {
            failures.push(format!(
                "{} → {} (expected {})",
                case["request"], body, case["expected"]
            ));
        }
        checked += 1;
    }
    for case in cases
        .get("evaluations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (status, body) = w.post_json("/access/v1/evaluations", &case["request"]);
        assert_eq!(status, 200, "{}", case["request"]);
        let got: Vec<&Value> = body["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["decision"])
            .collect();
        let want: Vec<&Value> = case["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["decision"])
            .collect();
        if got != want {
            failures.push(format!(
                "{} → {:?} (expected {:?})",
                case["request"], got, want
            ));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

#[test]
fn todo_interop_decisions_all_pass() {
    assert_eq!(replay("authzen-todo", "authzen/todo/decisions.json"), 43);
}

#[test]
fn api_gateway_interop_decisions_all_pass() {
    assert_eq!(
        replay("authzen-api-gateway", "authzen/api-gateway/decisions.json"),
        25
    );
}

const RICK: &str = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const BETH: &str = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";

#[test]
fn protocol_errors_are_precise() {
    let (w, _data) = start("authzen-todo");
    let ok = json!({"subject": {"type": "user", "id": RICK}, "action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "t1"}});
    // Unknown fields are ignored; X-Request-ID is echoed.
    let mut with_extra = ok.clone();
    with_extra["futureField"] = json!({"nested": true});
    let (s, h, b) = w.post(
        "/access/v1/evaluation",
        &with_extra.to_string(),
        &[("X-Request-ID", "req-42")],
    );
    assert_eq!(s, 200, "{b}");
    assert!(
        h.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("x-request-id") && v == "req-42")
    );
    assert!(
        h.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type")
                && v.starts_with("application/json"))
    );
    // Missing fields, wrong types, bad JSON, empty body, wrong content type: 400 with a JSON error.
    for bad in [
        json!({"action": {"name": "x"}, "resource": {"type": "todo", "id": "t"}}).to_string(),
        json!({"subject": {"id": RICK}, "action": {"name": "x"}, "resource": {"type": "todo", "id": "t"}}).to_string(),
        json!({"subject": {"type": "user", "id": RICK}, "action": {"name": 123}, "resource": {"type": "todo", "id": "t"}}).to_string(),
        json!({"subject": "rick", "action": {"name": "x"}, "resource": {"type": "todo", "id": "t"}}).to_string(),
        "{not json".to_owned(),
        String::new(),
    ] {
        let (s, _, b) = w.post("/access/v1/evaluation", &bad, &[("X-Request-ID", "bad-1")]);
        assert_eq!(s, 400, "{bad} → {b}");
        let err: Value = serde_json::from_str(&b).unwrap();
        assert!(err["error"]["message"].is_string(), "{b}");
    }
    let (s, _, _) = w.post(
        "/access/v1/evaluation",
        &ok.to_string(),
        &[("Content-Type", "text/plain")],
    );
    assert_eq!(s, 400);
    // Above the body limit (1 MiB by default): 413, answered from the declared length
    // before a byte of the body is read.
    let mut tcp = TcpStream::connect(w.url.trim_start_matches("http://")).unwrap();
    write!(tcp, "POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 2 << 20).unwrap();
    let mut head = [0u8; 512];
    let n = tcp.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("payload_too_large"), "{head}");
    // Without a declared length (chunked), the limit holds while reading.
    let mut tcp = TcpStream::connect(w.url.trim_start_matches("http://")).unwrap();
    write!(tcp, "POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = "x".repeat(64 << 10);
    let mut answered = String::new();
    for _ in 0..40 {
        if write!(tcp, "{:x}\r\n{chunk}\r\n", chunk.len()).is_err() {
            break;
        }
    }
    let _ = tcp.read_to_string(&mut answered);
    assert!(answered.starts_with("HTTP/1.1 413"), "{answered}");
    // Unknown actions are a deny with a reason, not an error.
    let (s, b) = w.post_json("/access/v1/evaluation", &json!({"subject": {"type": "user", "id": RICK}, "action": {"name": "launch_missiles"}, "resource": {"type": "todo", "id": "t"}}));
    assert_eq!(s, 200);
    assert_eq!(b["decision"], false);
    assert!(
        b["context"]["reason_admin"]["en"]
            .as_str()
            .unwrap()
            .contains("unknown action"),
        "{b}"
    );
}

#[test]
fn batch_semantics_defaults_and_item_errors() {
    let (w, _data) = start("authzen-todo");
    // Whole-entity defaults; an incomplete item fails alone under execute_all.
    let (s, b) = w.post_json("/access/v1/evaluations", &json!({
        "subject": {"type": "user", "id": BETH},
        "action": {"name": "can_read_todos"},
        "options": {"evaluations_semantic": "execute_all"},
        "evaluations": [{"resource": {"type": "todo", "id": "t1"}}, {}, {"action": {"name": "can_create_todo"}, "resource": {"type": "todo", "id": "t2"}}]
    }));
    assert_eq!(s, 200);
    let d: Vec<&Value> = b["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["decision"])
        .collect();
    assert_eq!(d, [&json!(true), &json!(false), &json!(false)]);
    assert!(
        b["evaluations"][1]["context"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resource")
    );
    // deny_on_first_deny stops after the first deny.
    let (_, b) = w.post_json("/access/v1/evaluations", &json!({
        "subject": {"type": "user", "id": BETH},
        "resource": {"type": "todo", "id": "t1"},
        "options": {"evaluations_semantic": "deny_on_first_deny"},
        "evaluations": [{"action": {"name": "can_read_todos"}}, {"action": {"name": "can_create_todo"}}, {"action": {"name": "can_read_user"}}]
    }));
    assert_eq!(b["evaluations"].as_array().unwrap().len(), 2, "{b}");
    // permit_on_first_permit stops after the first permit.
    let (_, b) = w.post_json("/access/v1/evaluations", &json!({
        "subject": {"type": "user", "id": BETH},
        "resource": {"type": "todo", "id": "t1"},
        "options": {"evaluations_semantic": "permit_on_first_permit"},
        "evaluations": [{"action": {"name": "can_create_todo"}}, {"action": {"name": "can_read_todos"}}, {"action": {"name": "can_create_todo"}}]
    }));
    assert_eq!(b["evaluations"].as_array().unwrap().len(), 2, "{b}");
    // No evaluations array: answered like a single evaluation.
    let (s, b) = w.post_json("/access/v1/evaluations", &json!({"subject": {"type": "user", "id": RICK}, "action": {"name": "can_create_todo"}, "resource": {"type": "todo", "id": "t"}}));
    assert_eq!(s, 200);
    assert_eq!(b, json!({"decision": true}));
}

#[test]
fn metadata_document_names_the_endpoints() {
    let (w, _data) = start("authzen-api-gateway");
    let (s, body) = w.get("/.well-known/authzen-configuration");
    assert_eq!(s, 200);
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["policy_decision_point"], w.url.as_str());
    assert_eq!(
        m["access_evaluation_endpoint"],
        format!("{}/access/v1/evaluation", w.url)
    );
    assert_eq!(
        m["access_evaluations_endpoint"],
        format!("{}/access/v1/evaluations", w.url)
    );
}

/// The decision rules the AuthZEN 1.0 certification scenario mandates (section C-1.4),
/// single and batched (C-2.2, C-3.2), against `examples/authzen-certification`.
#[test]
fn certification_fixture_decisions() {
    let (w, _data) = start("authzen-certification");
    let user = |id: &str| json!({"type": "user", "id": id});
    let rec = |id: &str| json!({"type": "record", "id": id});
    let archived =
        json!({"type": "record", "id": "record-2", "properties": {"status": "archived"}});
    let single = [
        (
            user("alice"),
            json!({"name": "read"}),
            rec("record-1"),
            true,
        ),
        (
            user("alice"),
            json!({"name": "write"}),
            rec("record-1"),
            true,
        ),
        (user("bob"), json!({"name": "read"}), rec("record-1"), true),
        (
            user("bob"),
            json!({"name": "write"}),
            rec("record-1"),
            false,
        ),
        (
            user("alice"),
            json!({"name": "write"}),
            archived.clone(),
            false,
        ),
        (
            json!({"type": "user", "id": "bob", "properties": {"role": "admin"}}),
            json!({"name": "write"}),
            archived.clone(),
            true,
        ),
        (
            user("alice"),
            json!({"name": "delete", "properties": {"soft": true}}),
            rec("record-1"),
            true,
        ),
        (
            user("alice"),
            json!({"name": "delete", "properties": {"soft": false}}),
            rec("record-1"),
            false,
        ),
        (
            json!({"type": "user", "id": "alice", "properties": {"department": "Sales", "role": "manager"}}),
            json!({"name": "read", "properties": {"method": "GET"}}),
            json!({"type": "record", "id": "record-1", "properties": {"status": "active", "owner": "bob"}}),
            true,
        ),
    ];
    for (i, (s, a, r, want)) in single.iter().enumerate() {
        let body = json!({"subject": s, "action": a, "resource": r, "context": {"time": "2025-06-27T18:03-07:00", "ip": "192.168.1.1"}});
        for _ in 0..2 {
            let (status, got) = w.post_json("/access/v1/evaluation", &body);
            assert_eq!(status, 200);
            assert_eq!(got["decision"], *want, "rule {}: {body} → {got}", i + 1);
        }
    }
    let batches = [
        (
            json!({"subject": user("bob"), "resource": rec("record-1"), "evaluations": [{"action": {"name": "read"}}, {"action": {"name": "write"}}]}),
            vec![true, false],
        ),
        (
            json!({"subject": user("alice"), "action": {"name": "write"}, "evaluations": [
            {"resource": {"type": "record", "id": "record-1", "properties": {"status": "active"}}},
            {"resource": archived.clone()}]}),
            vec![true, false],
        ),
        (
            json!({"action": {"name": "write"}, "resource": archived.clone(), "evaluations": [
            {"subject": user("alice")},
            {"subject": {"type": "user", "id": "bob", "properties": {"role": "admin"}}}]}),
            vec![false, true],
        ),
        (
            json!({"evaluations": [
            {"subject": user("alice"), "action": {"name": "read"}, "resource": rec("record-1")},
            {"subject": user("bob"), "action": {"name": "write"}, "resource": rec("record-1")}]}),
            vec![true, false],
        ),
        (
            json!({"subject": user("alice"), "action": {"name": "write"},
            "resource": {"type": "record", "id": "record-1", "properties": {"status": "active"}},
            "evaluations": [{}, {"resource": archived}]}),
            vec![true, false],
        ),
    ];
    for (body, want) in batches {
        let (status, got) = w.post_json("/access/v1/evaluations", &body);
        assert_eq!(status, 200, "{body}");
        let decisions: Vec<bool> = got["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect();
        assert_eq!(decisions, want, "{body} → {got}");
    }
}
