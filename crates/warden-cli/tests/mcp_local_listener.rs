//! Agent-bound local listeners: MCP without tokens on loopback or a unix socket, every
//! request acting as the one configured agent, decided by the same engine, marked as such.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;

use serde_json::{Value, json};
use warden_testkit::DemoOptions;

use crate::common::{Warden, create_agent_offline, warden};

const POLICIES: &str = r#"
@id("assistant-crm")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"call_tool", resource)
when { [Warden::Tool::"crm/read_contact", Warden::Tool::"crm/log_call_note"].contains(resource) };
"#;

fn create_agent(data: &Path, id: &str) {
    create_agent_offline(data, id, &data.join(format!("{id}.jwk")));
}

/// One JSON-RPC request over plain HTTP, no credentials: (status, parsed answer).
fn post(url: &str, session: Option<&str>, body: &Value) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-11-25");
    if let Some(s) = session {
        req = req.header("Mcp-Session-Id", s);
    }
    let mut resp = req.send(body.to_string().as_bytes()).unwrap();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, sid, answer_of(&text))
}

/// The JSON answer in a JSON or SSE body.
fn answer_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or(Value::Null)
    })
}

fn rpc(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn initialize() -> Value {
    rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "t", "version": "1"}}),
    )
}

/// One request over a unix socket (HTTP/1.1, `Connection: close`).
fn post_unix(sock: &Path, session: Option<&str>, body: &Value) -> (u16, Option<String>, Value) {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let body = body.to_string();
    let session = session.map_or(String::new(), |s| format!("Mcp-Session-Id: {s}\r\n"));
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         {session}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let sid = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("mcp-session-id: ")
            .map(str::to_owned)
    });
    // Chunked or not, the JSON/SSE payload lines are in there.
    (status, sid, answer_of(rest.trim()))
}

#[test]
fn a_local_listener_acts_as_its_agent_decides_with_the_policy_and_marks_decisions() {
    let (_rt, demo) = common::demo_server("127.0.0.1:0", DemoOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_agent(&data, "assistant");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("p.cedar"), POLICIES).unwrap();
    let sock = dir.path().join("agent.sock");
    let config = format!(
        "[inspection.pinning]\nmode = \"off\"\n[server]\nlisten = \"127.0.0.1:0\"\n[policy]\ndir = {policies:?}\nwatch = false\n\
         [upstreams.crm]\nurl = \"{}\"\n\
         [[local_listeners]]\nagent = \"assistant\"\nlisten = \"127.0.0.1:0\"\n\
         [[local_listeners]]\nagent = \"assistant\"\nunix = {sock:?}\ntask = \"notes\"\n\
         tools = [\"crm/read_contact\"]\n",
        demo.url("crm")
    );
    let config_file = dir.path().join("warden.toml");
    std::fs::write(&config_file, config).unwrap();
    let w = Warden::start_with(
        warden()
            .args(["serve", "--config"])
            .arg(&config_file)
            .env("WARDEN_DATA_DIR", &data),
    );
    let local = w
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("local").map(str::trim))
        .and_then(|l| l.strip_prefix("http://"))
        .map(|l| format!("http://{}", l.split(' ').next().unwrap()))
        .unwrap_or_else(|| panic!("no local listener in the banner:\n{}", w.stdout));

    // Loopback, no tokens: the policy alone decides.
    let (status, sid, init) = post(&local, None, &initialize());
    assert_eq!(status, 200, "{init}");
    let sid = sid.expect("a session");
    let (_, _, tools) = post(&local, Some(&sid), &rpc(2, "tools/list", json!({})));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["crm.log_call_note", "crm.read_contact"], "{tools}");
    let call = |id, tool: &str| {
        post(
            &local,
            Some(&sid),
            &rpc(
                id,
                "tools/call",
                json!({"name": tool, "arguments": {"id": "c-1"}}),
            ),
        )
        .2
    };
    let ok = call(3, "crm.read_contact");
    assert!(
        ok["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Ada"),
        "{ok}"
    );
    let denied = call(4, "crm.delete_record");
    assert_eq!(denied["error"]["code"], -32001, "{denied}");
    assert_eq!(denied["error"]["data"]["reason"], "policy_denied");
    let log = w.stderr.lock().unwrap().clone();
    assert!(
        log.contains("via=local:assistant") || log.contains("via=\"local:assistant\""),
        "{log}"
    );

    // The unix socket narrows the task to its configured tools.
    let (status, sid, _) = post_unix(&sock, None, &initialize());
    assert_eq!(status, 200);
    let sid = sid.expect("a session");
    let note = post_unix(
        &sock,
        Some(&sid),
        &rpc(
            2,
            "tools/call",
            json!({"name": "crm.log_call_note", "arguments": {"id": "c-1", "note": "x"}}),
        ),
    )
    .2;
    assert_eq!(note["error"]["data"]["reason"], "not_in_task", "{note}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Suspending the agent stops its local listeners at the next request.
    w.admin().set_state("assistant", "suspend", "test").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, _, answer) = post(&local, None, &initialize());
        if status == 403 {
            assert_eq!(answer["error"]["data"]["reason"], "agent_blocked");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served: {answer}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_local_listener_off_loopback_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("w.toml");
    std::fs::write(
        &f,
        "[[local_listeners]]\nagent = \"a\"\nlisten = \"0.0.0.0:8490\"\n",
    )
    .unwrap();
    let out = warden()
        .args(["config", "validate"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("not a loopback address") && err.contains("w.toml"),
        "{err}"
    );
}
