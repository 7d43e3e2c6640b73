//! Tool pinning end to end (EP-4, IO-4) against the real binary and a small MCP server that
//! pulls the rug (`tests/support/rugpull_server.py`): a tool is unusable until approved;
//! once approved it works; when its description changes the next call is refused and the
//! tool disappears from `tools/list`, the change is alerted and audited, `warden tools
//! diff` shows it, and only a person's re-approval brings it back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use common::rugpull::RugPull;
use common::{Warden, warden};
use serde_json::{Value, json};
use warden_client::mcp::McpSession;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tools_cli(w: &Warden, args: &[&str]) -> std::process::Output {
    warden()
        .arg("tools")
        .args(args)
        .args(["--server", &w.url])
        .env("WARDEN_ADMIN_TOKEN", w.admin_secret())
        .output()
        .unwrap()
}

/// The `warden tools list --json` row of `tool`.
fn row<'a>(v: &'a Value, tool: &str) -> &'a Value {
    v.as_array()
        .unwrap()
        .iter()
        .find(|r| r["tool"] == tool)
        .unwrap_or_else(|| panic!("{tool} not listed: {v}"))
}

fn reason_of(r: &Value) -> &str {
    r["error"]["data"]["reason"].as_str().unwrap_or("")
}

#[test]
fn a_changed_tool_is_disabled_until_a_person_approves_it_again() {
    let server = RugPull::start();
    // The default: no trust on first use.
    let (dir, w, mut s) = server.behind_warden("", &["summarize"]);
    let call = |s: &mut McpSession| {
        s.call_tool("summarize", json!({"note": "call Bob on Monday"}))
            .unwrap()
    };

    // Never approved: hidden and refused.
    assert!(s.tool_names().unwrap().is_empty());
    let r = call(&mut s);
    assert_eq!(reason_of(&r), "tool_not_approved", "{r}");
    assert_eq!(server.calls(), 0);

    // A person looks and approves the exact definition.
    let out = tools_cli(&w, &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains("notes/summarize") && listed.contains("new"),
        "{listed}"
    );
    let v: Value = serde_json::from_slice(&tools_cli(&w, &["list", "--json"]).stdout).unwrap();
    let hash = row(&v, "summarize")["current_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = tools_cli(
        &w,
        &[
            "approve",
            "notes/summarize",
            "--hash",
            &hash,
            "--reason",
            "reviewed",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.tool_names().unwrap(), ["summarize"]);
    let r = call(&mut s);
    assert!(r.get("result").is_some(), "{r}");
    assert_eq!(server.calls(), 1);

    // The rug pull: same tool, new description with hidden instructions.
    server.post("/rugpull");
    // The agent lists tools again (e.g. after list_changed): the tool is gone...
    assert!(
        s.tool_names().unwrap().is_empty(),
        "a changed tool stays hidden"
    );
    // ...and its next call is refused without reaching the server.
    let r = call(&mut s);
    assert_eq!(reason_of(&r), "tool_changed", "{r}");
    assert_eq!(server.calls(), 1, "nothing was forwarded");

    // Alerted and audited, with the poisoning it carries; the diff shows the change.
    let out = tools_cli(&w, &["list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row(&v, "summarize")["status"], "changed");
    let poisoning = row(&v, "summarize")["poisoning"].to_string();
    assert!(
        poisoning.contains("secret_reference") || poisoning.contains("important_tag"),
        "{poisoning}"
    );
    let new_hash = row(&v, "summarize")["current_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_hash, hash);
    let out = tools_cli(&w, &["diff", "notes/summarize"]);
    let diff = text(&out.stdout);
    assert!(diff.contains("+ ") && diff.contains("id_rsa"), "{diff}");
    assert!(diff.contains("- ") && diff.contains("changed"), "{diff}");
    let stderr = w.stderr.lock().unwrap().clone();
    assert!(stderr.contains("changed since it was approved"), "{stderr}");

    // An approval of a definition nobody reviewed is refused.
    let out = tools_cli(
        &w,
        &[
            "approve",
            "notes/summarize",
            "--hash",
            &hash,
            "--reason",
            "oops",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not the reviewed"),
        "{}",
        text(&out.stderr)
    );

    // Audit: the change and the approvals.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = common::audit_query(&dir.path().join("data"), &["--kind", "event"]);
        let names: Vec<&str> = events
            .iter()
            .filter_map(|e| e["record"]["event"].as_str())
            .collect();
        if names.contains(&"tool_changed") && names.contains(&"tool_poisoning") {
            assert!(names.contains(&"tool_approved"), "{names:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{names:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Re-approved by a person (the poisoned one, to prove the gate is the approval).
    let out = tools_cli(
        &w,
        &[
            "approve",
            "notes/summarize",
            "--hash",
            &new_hash,
            "--reason",
            "accepted risk",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = call(&mut s);
    assert!(r.get("result").is_some(), "{r}");
}

/// IO-3: a tool that declares an output schema is held to it. Pinning is off here: the
/// output gate keeps its own view of the tools (listed before the first call).
#[test]
fn results_that_break_the_declared_output_schema_are_refused() {
    let server = RugPull::start();
    let (dir, _w, mut s) = server.behind_warden(
        "[inspection.pinning]\nmode = \"off\"\n",
        &["balance", "unlisted"],
    );

    // Kept to: the structured result reaches the agent as sent.
    let r = s.call_tool("balance", json!({"account": "ACC-1"})).unwrap();
    assert_eq!(r["result"]["structuredContent"]["balance"], 1234.5, "{r}");

    // Broken: refused, naming where and which keyword, never the value.
    server.post("/garble");
    let r = s.call_tool("balance", json!({"account": "ACC-1"})).unwrap();
    assert_eq!(reason_of(&r), "output_schema_violation", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/balance") && message.contains("type"),
        "{message}"
    );
    assert!(!r.to_string().contains("ask again later"), "{r}");
    assert_eq!(
        server.calls(),
        2,
        "the upstream answered; Warden refused the answer"
    );

    // A tool the upstream does not list (this server answers it anyway): its answer could
    // not be checked, so it does not pass as checked.
    let r = s.call_tool("unlisted", json!({})).unwrap();
    assert_eq!(reason_of(&r), "output_schema_violation", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has not seen the tool"),
        "{r}"
    );
    assert_eq!(server.calls(), 3);

    // Audited, without the value either.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = common::audit_query(&dir.path().join("data"), &["--kind", "event"]);
        let found = events.iter().find(|e| {
            e["record"]["event"] == "content_findings"
                && e["record"]["details"]["what"] == "output_schema"
        });
        if let Some(e) = found {
            assert_eq!(e["record"]["details"]["action"], "block", "{e}");
            assert!(!e.to_string().contains("ask again later"), "{e}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no output_schema finding: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
