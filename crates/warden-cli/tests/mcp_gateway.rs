//! The MCP gateway end to end: the real `warden` binary in front of the demo tool server
//! (rmcp, Streamable HTTP), driven by an MCP client holding task tokens with DPoP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use serde_json::{Value, json};
use warden_client::TaskRequest;

use crate::common::env::{Env, UPSTREAM_SECRET};
use warden_client::mcp::McpSession;

fn error_of(r: &Value) -> (i64, String) {
    (
        r["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {r}")),
        r["error"]["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

fn text_of(r: &Value) -> String {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result: {r}"))
        .to_owned()
}

#[test]
fn allowed_calls_are_forwarded_with_the_upstream_credential_and_never_the_agent_token() {
    let env = Env::start();
    for protocol in ["2025-06-18", "2025-11-25", "2026-07-28"] {
        let mut s = env.session("assistant", "crm", &["read_contact"], protocol);
        let init = s.initialize().unwrap();
        assert!(init.get("result").is_some(), "{protocol}: {init}");
        let r = s.call_tool("read_contact", json!({"id": "c-1"})).unwrap();
        assert!(text_of(&r).contains("Ada Lovelace"), "{protocol}: {r}");
    }
    // The upstream saw only its own credential: no agent token, no DPoP header value.
    assert_eq!(
        env.stats().authorizations(),
        vec![format!("Bearer {UPSTREAM_SECRET}")]
    );
}

#[test]
fn a_tool_outside_the_task_is_refused_and_never_reaches_the_upstream() {
    let env = Env::start();
    let mut s = env.session("assistant", "crm", &["read_contact"], "2025-11-25");
    s.initialize().unwrap();
    let before = env.stats().requests("crm");
    let r = s.call_tool("delete_record", json!({"id": "c-1"})).unwrap();
    assert_eq!(error_of(&r), (-32003, "not_in_task".into()), "{r}");
    // In the task, but no policy permits it: the token endpoint refuses to grant it at all.
    let client = env.agent("assistant");
    let refused = client
        .token(
            &env.url("crm"),
            &TaskRequest::new("t-2", "x").call_tool("crm/delete_record"),
        )
        .unwrap_err();
    assert_eq!(refused.code(), Some("invalid_authorization_details"));
    assert_eq!(env.stats().requests("crm"), before, "nothing forwarded");
}

#[test]
fn arguments_decide_transfers_allow_approval_or_deny() {
    let env = Env::start();
    let mut s = env
        .session("assistant", "finance", &["transfer_funds"], "2025-11-25")
        .with_reason("paying invoice 42");
    s.initialize().unwrap();
    let mut transfer = |amount: Value| {
        s.call_tool(
            "transfer_funds",
            json!({"amount": amount, "to": "DE89370400440532013000"}),
        )
        .unwrap()
    };
    let ok = transfer(json!(200));
    assert!(text_of(&ok).contains("transferred 200.00"), "{ok}");
    let before = env.stats().requests("finance");
    // Held for an approver (tests/approvals.rs); nobody decides within the test config's
    // 2 s, so the timeout denies.
    let approval = transfer(json!(5000));
    assert_eq!(error_of(&approval), (-32001, "approval_timeout".into()));
    assert!(
        approval["error"]["data"]["approval"].is_string(),
        "{approval}"
    );
    assert_eq!(
        approval["error"]["data"]["policies"],
        json!(["assistant-large-transfers"])
    );
    let denied = transfer(json!(50000));
    assert_eq!(error_of(&denied), (-32001, "policy_denied".into()));
    assert_eq!(denied["error"]["data"]["policies"], json!(["transfer-cap"]));
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no agent transfers more than 10000")
    );
    // A value Cedar cannot take (a float with 5 decimals) is an error, hence a deny.
    let odd = transfer(json!(1.00001));
    assert_eq!(error_of(&odd).0, -32001);
    assert_eq!(env.stats().requests("finance"), before, "nothing forwarded");
    // The stated reason travels with the decision.
    let log = env.warden.stderr.lock().unwrap().clone();
    assert!(log.contains("paying invoice 42"), "{log}");
}

#[test]
fn tools_list_shows_only_what_the_task_may_use() {
    let env = Env::start();
    for protocol in ["2025-11-25", "2026-07-28"] {
        let mut s = env.session(
            "assistant",
            "crm",
            &["read_contact", "log_call_note"],
            protocol,
        );
        s.initialize().unwrap();
        let mut names = s.tool_names().unwrap();
        names.sort();
        assert_eq!(names, ["log_call_note", "read_contact"], "{protocol}");
        let mut s = env.session("assistant", "crm", &["read_contact"], protocol);
        s.initialize().unwrap();
        assert_eq!(s.tool_names().unwrap(), ["read_contact"], "{protocol}");
    }
}

#[test]
fn no_token_means_401_with_the_resource_metadata() {
    let env = Env::start();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
    let (status, headers, _) = env.warden.post(
        "/mcp/crm",
        body,
        &[("Accept", "application/json, text/event-stream")],
    );
    assert_eq!(status, 401);
    let challenge = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp/crm\"",
            env.warden.url
        )),
        "{challenge}"
    );
    // A token for another upstream is not valid here either.
    let s = env.session("assistant", "finance", &["transfer_funds"], "2025-11-25");
    let crm = McpSession::new(
        env.agent("assistant"),
        &env.url("crm"),
        s.token(),
        "2025-11-25",
    );
    let a = crm.post_raw(body.as_bytes(), &[]).unwrap();
    assert_eq!(a.status, 401);
    assert_eq!(env.stats().requests("crm"), 0);
}

/// A request refused before its body is read (no token, too large) is answered with
/// `Connection: close` and the connection is closed: a pooled client reconnects instead of
/// sending its next request on a connection whose unread body would be taken for it.
#[test]
fn a_refusal_before_the_body_is_read_closes_the_connection_and_says_so() {
    use std::io::{Read, Write};
    let env = Env::start();
    let addr = env.warden.url.trim_start_matches("http://").to_owned();
    let big = "x".repeat(200_000);
    for (path, body, status) in [
        (
            "/mcp/crm",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
            "401",
        ),
        ("/mcp/crm", big.as_str(), "401"),
        // The admin API the same (`unread::close_if_unread`).
        ("/admin/v1/agents", r#"{"id":"x"}"#, "401"),
        ("/admin/v1/agents", big.as_str(), "401"),
    ] {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            c,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .ok(); // Warden may close before the whole of a large body is sent.
        let mut answer = Vec::new();
        let read = c.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(
            answer.starts_with(&format!("http/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(read.is_ok(), "the connection ends cleanly: {read:?}");
    }
    assert_eq!(env.stats().requests("crm"), 0);
}

#[test]
fn malformed_input_gets_precise_errors_and_nothing_is_forwarded() {
    let env = Env::start();
    let mut s = env.session("assistant", "crm", &["read_contact"], "2025-11-25");
    s.initialize().unwrap();
    let before = env.stats().requests("crm");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"read_contact","arguments":{{"id":"{}"}}}}}}"#,
        // Over the 64 KiB limit, small enough to sit in the socket buffer whole (Warden
        // answers 413 without reading the rest).
        "x".repeat(80 << 10)
    );
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, i64, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", "{\"jsonrpc\":\"2.0\",".into(), vec![], 400, -32700, "malformed_json"),
        ("batch", r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.into(), vec![], 400, -32600, "invalid_jsonrpc"),
        ("duplicate keys", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_contact","name":"delete_record"}}"#.into(), vec![], 400, -32700, "malformed_json"),
        ("wrong version", r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.into(), vec![], 400, -32600, "invalid_jsonrpc"),
        ("no name", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#.into(), vec![], 400, -32602, "invalid_params"),
        ("arguments not an object", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_contact","arguments":[1]}}"#.into(), vec![], 400, -32602, "invalid_params"),
        ("oversize", big, vec![], 413, -32600, "frame_too_large"),
        ("method header mismatch", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_contact","arguments":{"id":"c-1"}}}"#.into(), vec![("Mcp-Method", "tools/list")], 400, -32600, "header_mismatch"),
        ("name header mismatch", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_contact","arguments":{"id":"c-1"}}}"#.into(), vec![("Mcp-Method", "tools/call"), ("Mcp-Name", "delete_record")], 400, -32600, "header_mismatch"),
        ("unmediated method", r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}"#.into(), vec![], 200, -32601, "not_mediated"),
    ];
    for (what, body, headers, status, code, reason) in cases {
        let a = s.post_raw(body.as_bytes(), &headers).unwrap();
        assert_eq!(a.status, status, "{what}: {}", a.body);
        let v: Value =
            serde_json::from_str(&a.body).unwrap_or_else(|_| panic!("{what}: {}", a.body));
        assert_eq!(error_of(&v), (code, reason.to_owned()), "{what}: {v}");
    }
    // 2026-07-28 requires the headers.
    let stateless = env.session("assistant", "crm", &["read_contact"], "2026-07-28");
    let a = stateless
        .post_raw(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_contact","arguments":{"id":"c-1"}}}"#,
            &[],
        )
        .unwrap();
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("header_mismatch"), "{}", a.body);
    // Unknown session ids, and sessions of other agents, are 404.
    let mut forged = s.clone();
    forged.set_session_id(Some("made-up"));
    assert_eq!(
        forged
            .post_raw(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &[])
            .unwrap()
            .status,
        404
    );
    let mut other = env.session("other", "crm", &["read_contact"], "2025-11-25");
    other.set_session_id(s.session_id());
    let a = other
        .post_raw(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
            &[],
        )
        .unwrap();
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(
        env.stats().requests("crm"),
        before,
        "the upstream saw none of it"
    );
}

#[test]
fn foreign_origins_are_refused() {
    let env = Env::start();
    let s = env.session("assistant", "crm", &["read_contact"], "2025-11-25");
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let a = s
        .post_raw(body, &[("Origin", "https://evil.example")])
        .unwrap();
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("origin_not_allowed"));
    assert_eq!(env.stats().requests("crm"), 0);
}

#[test]
fn bearer_agents_work_and_suspension_applies_to_the_next_call() {
    let env = Env::start();
    // `plain` opted out of DPoP: its bearer token works alone.
    let mut bearer = env.session("plain", "crm", &["read_contact"], "2025-11-25");
    bearer.initialize().unwrap();
    let r = bearer
        .call_tool("read_contact", json!({"id": "c-2"}))
        .unwrap();
    assert!(text_of(&r).contains("Grace Hopper"), "{r}");
    let mut s = env.session("assistant", "crm", &["read_contact"], "2025-11-25");
    s.initialize().unwrap();
    s.call_tool("read_contact", json!({"id": "c-2"})).unwrap();
    env.warden
        .admin()
        .set_state("assistant", "suspend", "test")
        .unwrap();
    let a = s
        .post_raw(
            br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_contact","arguments":{"id":"c-2"}}}"#,
            &[],
        )
        .unwrap();
    assert_eq!(a.status, 401, "{}", a.body);
}

#[test]
fn the_aggregate_endpoint_namespaces_filters_routes_and_decides_per_upstream() {
    let env = Env::start();
    let client = env.agent("assistant");
    let aggregate = format!("{}/mcp", env.warden.url);
    let task = TaskRequest::new("t-agg", "one endpoint for everything")
        .call_tool("crm/read_contact")
        .call_tool("finance/transfer_funds")
        .action(
            warden_core::ActionKind::ReadResource,
            "docs/docs://handbook.md",
        );
    let token = client.token(&aggregate, &task).unwrap();
    for protocol in ["2025-11-25", "2026-07-28"] {
        let mut s = McpSession::new(
            env.agent("assistant"),
            &aggregate,
            &token.access_token,
            protocol,
        );
        let init = s.initialize().unwrap();
        assert!(init.get("result").is_some(), "{protocol}: {init}");
        // Only the granted upstreams are asked, and only what the task may use is shown.
        let email_before = env.stats().requests("email");
        assert_eq!(
            s.tool_names().unwrap(),
            ["crm.read_contact", "finance.transfer_funds"],
            "{protocol}"
        );
        assert_eq!(
            env.stats().requests("email"),
            email_before,
            "email not asked"
        );
        let r = s
            .call_tool("crm.read_contact", json!({"id": "c-1"}))
            .unwrap();
        assert!(text_of(&r).contains("Ada Lovelace"), "{protocol}: {r}");
        let ok = s
            .call_tool("finance.transfer_funds", json!({"amount": 10, "to": "x"}))
            .unwrap();
        assert!(text_of(&ok).contains("transferred 10.00"), "{ok}");
        let finance_before = env.stats().requests("finance");
        let capped = s
            .call_tool(
                "finance.transfer_funds",
                json!({"amount": 50000, "to": "x"}),
            )
            .unwrap();
        assert_eq!(
            error_of(&capped),
            (-32001, "policy_denied".into()),
            "{capped}"
        );
        assert_eq!(
            capped["error"]["data"]["resource"],
            "finance/transfer_funds"
        );
        let outside = s
            .call_tool("crm.delete_record", json!({"id": "c-1"}))
            .unwrap();
        assert_eq!(error_of(&outside), (-32003, "not_in_task".into()));
        let unknown = s.call_tool("nowhere.tool", json!({})).unwrap();
        assert_eq!(error_of(&unknown), (-32602, "unknown_name".into()));
        let bare = s.call_tool("read_contact", json!({})).unwrap();
        assert_eq!(error_of(&bare), (-32602, "unknown_name".into()));
        assert_eq!(
            env.stats().requests("finance"),
            finance_before,
            "nothing forwarded"
        );

        // Resources keep their URIs: listed (filtered), then routed to the upstream.
        let listed = s.request("resources/list", json!({})).unwrap();
        let uris: Vec<&str> = listed["result"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uri"].as_str().unwrap())
            .collect();
        assert_eq!(uris, ["docs://handbook.md"], "{listed}");
        let read = s
            .request("resources/read", json!({"uri": "docs://handbook.md"}))
            .unwrap();
        assert!(
            read["result"]["contents"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("Employee handbook")),
            "{read}"
        );
        let poisoned = s
            .request("resources/read", json!({"uri": "docs://q3-report.md"}))
            .unwrap();
        assert_eq!(
            error_of(&poisoned),
            (-32003, "not_in_task".into()),
            "{poisoned}"
        );
    }
    // A token for one upstream does not open the aggregate.
    let crm_only = client
        .token(
            &env.url("crm"),
            &TaskRequest::new("t-crm", "x").call_tool("crm/read_contact"),
        )
        .unwrap();
    let s = McpSession::new(
        env.agent("assistant"),
        &aggregate,
        &crm_only.access_token,
        "2025-11-25",
    );
    let refused = s
        .post_raw(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &[])
        .unwrap();
    assert_eq!(refused.status, 401);
    // The upstream only ever saw its own credential.
    assert_eq!(
        env.stats().authorizations(),
        vec![format!("Bearer {UPSTREAM_SECRET}")]
    );
}

/// A Python venv with the official MCP SDK under `target/pyenv`, created on first use.
fn python_sdk() -> std::path::PathBuf {
    let venv = common::repo_root().join("target/pyenv");
    let python = venv.join("bin/python");
    common::installed_once(&venv.join(".mcp-2.3.0"), || {
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the Python SDK test");
        assert!(ok.success(), "python3 -m venv failed");
        let ok = std::process::Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "mcp==2.3.0"])
            .status()
            .unwrap();
        assert!(ok.success(), "pip install mcp==2.3.0 failed");
        std::fs::write(venv.join(".mcp-2.3.0"), "").unwrap();
    });
    python
}

#[test]
fn the_official_python_sdk_lists_and_calls_tools_through_warden_with_a_token() {
    let python = python_sdk();
    let env = Env::start();
    // `plain` is a bearer agent: the SDK sends a static Authorization header.
    let client = env.agent("plain").with_dpop_key(None);
    let token = client
        .token(
            &env.url("crm"),
            &TaskRequest::new("t-py", "python sdk").call_tool("crm/read_contact"),
        )
        .unwrap();
    let before = env.stats().requests("crm");
    let out = std::process::Command::new(python)
        .arg(common::repo_root().join("crates/warden-cli/tests/support/mcp_sdk_client.py"))
        .args([
            env.url("crm").as_str(),
            token.access_token.as_str(),
            "read_contact",
            "delete_record",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.warden.stderr.lock().unwrap()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["tools"], json!(["read_contact"]), "{seen}");
    assert_eq!(seen["granted"]["is_error"], false, "{seen}");
    assert!(
        seen["granted"]["text"]
            .as_str()
            .unwrap()
            .contains("Ada Lovelace"),
        "{seen}"
    );
    assert_eq!(seen["other"]["code"], -32003, "{seen}");
    assert_eq!(seen["other"]["data"]["reason"], "not_in_task", "{seen}");
    assert!(
        env.stats().requests("crm") > before,
        "the granted call reached the upstream"
    );
    assert_eq!(
        env.stats().authorizations(),
        vec![format!("Bearer {UPSTREAM_SECRET}")]
    );
}
