//! A stdio upstream end to end: the official `@modelcontextprotocol/server-filesystem`
//! (npm, installed on first use into `target/npm`) launched and supervised by the real
//! `warden` binary, called by an agent with a DPoP-bound task token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_client::mcp::McpSession;
use warden_client::{AgentClient, TaskRequest};

use crate::common::{Warden, create_agent_offline, npm_installed, warden};

const FILESYSTEM_SERVER: &str = "@modelcontextprotocol/server-filesystem@2026.8.31";

/// The official filesystem server's launcher, installed with npm if missing.
fn filesystem_server() -> PathBuf {
    npm_installed("mcp-server-filesystem", &[FILESYSTEM_SERVER])
}

/// Reader may read and list inside `allowed`; `..` and writes are forbidden.
fn write_policies(root: &std::path::Path, allowed: &std::path::Path) {
    let policies = root.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("fs.cedar"),
        format!(
            r#"
@id("reader-reads-inside")
@reason("the reader reads files inside {allowed}")
permit (principal == Warden::Agent::"reader", action == Warden::Action::"call_tool", resource)
when {{ [Warden::Tool::"fs/read_text_file", Warden::Tool::"fs/list_directory"].contains(resource) &&
       context.arguments has path && context.arguments.path like "{allowed}/*" }};

@id("no-traversal")
@reason("paths with .. are refused")
forbid (principal, action == Warden::Action::"call_tool", resource)
when {{ context.arguments has path && context.arguments.path like "*..*" }};

@id("read-only")
@reason("the file system is read-only for agents")
forbid (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"fs/write_file");
"#,
            allowed = allowed.display()
        ),
    )
    .unwrap();
    std::fs::write(
        policies.join("arguments.cedarschema"),
        "namespace Warden { type Arguments = { \"path\"?: String, \"content\"?: String }; }",
    )
    .unwrap();
}

#[test]
fn the_official_filesystem_server_behind_warden() {
    let server = filesystem_server();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let allowed = root.join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::write(allowed.join("hello.txt"), "hello from inside").unwrap();
    std::fs::create_dir(root.join("outside")).unwrap();
    std::fs::write(root.join("outside/secret.txt"), "do not read").unwrap();
    write_policies(&root, &allowed);
    std::fs::write(
        root.join("warden.toml"),
        format!(
            "[inspection.pinning]\nmode = \"off\"\n[server]\nlisten = \"127.0.0.1:0\"\n[policy]\ndir = \"policies\"\nwatch = false\n\
             [upstreams.fs]\ncommand = \"{}\"\nargs = [\"{}\"]\n\
             [upstreams.fs.credential]\nenv = \"FS_API_TOKEN\"\nsecret = {{ env = \"FS_SECRET\" }}\n",
            server.display(),
            allowed.display()
        ),
    )
    .unwrap();
    let w = Warden::start_with(
        warden()
            .args(["serve", "--config"])
            .arg(root.join("warden.toml"))
            .env("WARDEN_DATA_DIR", root.join("data"))
            .env("FS_SECRET", "fs-secret-456"),
    );
    let key = w.register_agent("reader", true);
    let client = AgentClient::new(&w.url, "reader", key);
    let url = format!("{}/mcp/fs", w.url);
    // Writing is refused at the token endpoint already: the policy forbids it outright.
    let task = TaskRequest::new("t-fs", "read notes")
        .call_tool("fs/read_text_file")
        .call_tool("fs/list_directory")
        .call_tool("fs/write_file");
    let token = client.token(&url, &task).unwrap();
    assert_eq!(token.granted().len(), 2, "{token:?}");
    let mut s = McpSession::new(client, &url, &token.access_token, "2025-11-25");
    // The child starts in the background (npm's node): wait until Warden has initialized it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let init = loop {
        let r = s.initialize();
        match r {
            Ok(v) if v.get("result").is_some() => break v,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "never initialized: {other:?}\n{}",
                    w.stderr.lock().unwrap()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(
        init["result"]["serverInfo"]["name"]
            .as_str()
            .unwrap()
            .contains("filesystem"),
        "{init}"
    );

    let names = s.tool_names().unwrap();
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["list_directory", "read_text_file"]);

    let inside = allowed.join("hello.txt");
    let r = s
        .call_tool("read_text_file", json!({"path": inside}))
        .unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "hello from inside",
        "{r}"
    );

    let reason = |r: &Value| {
        r["error"]["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let outside = s
        .call_tool(
            "read_text_file",
            json!({"path": root.join("outside/secret.txt")}),
        )
        .unwrap();
    assert_eq!(reason(&outside), "policy_denied", "{outside}");
    let sneaky = format!("{}/../outside/secret.txt", allowed.display());
    let traversal = s
        .call_tool("read_text_file", json!({"path": sneaky}))
        .unwrap();
    assert_eq!(reason(&traversal), "policy_denied", "{traversal}");
    assert_eq!(
        traversal["error"]["data"]["policies"],
        json!(["no-traversal"])
    );
    let write = s
        .call_tool(
            "write_file",
            json!({"path": allowed.join("x.txt"), "content": "x"}),
        )
        .unwrap();
    assert_eq!(reason(&write), "not_in_task", "{write}");
    assert!(!allowed.join("x.txt").exists());
    // Nothing the agent received carries the upstream's credential.
    for v in [&init, &r, &outside, &traversal, &write] {
        assert!(!v.to_string().contains("fs-secret-456"));
    }
}

/// `warden mcp-stdio`: a desktop client's view — JSON-RPC lines on Warden's stdin/stdout,
/// the official filesystem server behind it, decided as agent `reader` with the same policies.
#[test]
fn warden_mcp_stdio_mediates_a_desktop_client() {
    use std::io::{BufRead as _, Write as _};
    let server = filesystem_server();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let allowed = root.join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::write(allowed.join("hello.txt"), "hello from inside").unwrap();
    std::fs::write(root.join("secret.txt"), "do not read").unwrap();
    write_policies(&root, &allowed);
    let data = root.join("data");
    let create = |id: &str| create_agent_offline(&data, id, &root.join(format!("{id}.jwk")));
    create("reader");
    create("someone-else");
    let stdio = |key: &str| {
        let mut c = warden();
        c.args(["mcp-stdio", "--agent", "reader", "--agent-key"])
            .arg(root.join(key))
            .args(["--name", "fs", "--data-dir"])
            .arg(&data)
            .arg("--policies")
            .arg(root.join("policies"))
            .arg("--")
            .arg(&server)
            .arg(&allowed)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };

    // Another agent's key does not make you `reader`.
    let wrong = stdio("someone-else.jwk").output().unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("not a valid key of agent `reader`"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let mut child = stdio("reader.jwk").spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ask = |id: i64, method: &str, params: Value| -> Value {
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        stdout.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|_| panic!("not JSON: {answer:?}"))
    };
    let init = ask(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "desktop", "version": "1"}}),
    );
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let tools = ask(2, "tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"read_text_file") && !names.contains(&"write_file"),
        "{names:?}"
    );
    let path = allowed.join("hello.txt");
    let read = ask(
        3,
        "tools/call",
        json!({"name": "read_text_file", "arguments": {"path": path}}),
    );
    assert!(read.to_string().contains("hello from inside"), "{read}");
    let outside = ask(
        4,
        "tools/call",
        json!({"name": "read_text_file", "arguments": {"path": root.join("secret.txt")}}),
    );
    assert_eq!(outside["error"]["code"], -32001, "{outside}");
    let write = ask(
        5,
        "tools/call",
        json!({"name": "write_file", "arguments": {"path": allowed.join("x"), "content": "x"}}),
    );
    assert_eq!(
        write["error"]["data"]["policies"],
        json!(["read-only"]),
        "{write}"
    );
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("stdio:reader"), "{log}");
    assert!(!allowed.join("x").exists());
}
