//! `warden serve --demo` and the README quickstart commands, run as a user would: the real
//! binary, its printed `export` line, and `warden mcp` against it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Output;

use crate::common::{Warden, warden};

/// The `export K=V ...` line the demo prints, as pairs.
fn exports(banner: &str) -> Vec<(String, String)> {
    let line = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("export "))
        .unwrap_or_else(|| panic!("no export line in:\n{banner}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn mcp(env: &[(String, String)], args: &[&str]) -> Output {
    warden()
        .arg("mcp")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_demo_quickstart_allows_denies_and_filters_as_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let start = || {
        Warden::start_with(
            warden()
                .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data),
        )
    };
    let w = start();
    let env = exports(&w.stdout);
    assert!(env.iter().any(|(k, _)| k == "WARDEN_AGENT_KEY"));

    // An allowed call.
    let ok = mcp(&env, &["call", "crm.read_contact", r#"{"id": "c-1"}"#]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("Ada Lovelace"));

    // A call outside the task.
    let outside = mcp(
        &env,
        &[
            "call",
            "crm.delete_record",
            r#"{"id": "c-1"}"#,
            "--grant",
            "crm/read_contact",
        ],
    );
    assert_eq!(outside.status.code(), Some(3));
    assert!(
        text(&outside.stderr).contains("not_in_task"),
        "{}",
        text(&outside.stderr)
    );

    // An argument over the cap.
    let capped = mcp(
        &env,
        &[
            "call",
            "finance.transfer_funds",
            r#"{"amount": 50000, "to": "DE89370400440532013000"}"#,
        ],
    );
    assert_eq!(capped.status.code(), Some(3));
    let err = text(&capped.stderr);
    assert!(
        err.contains("policy_denied") && err.contains("transfer-cap"),
        "{err}"
    );

    // The filtered list: asked for three tools, shown the two the policy allows.
    let tools = mcp(
        &env,
        &[
            "tools",
            "--grant",
            "crm/read_contact",
            "--grant",
            "crm/delete_record",
            "--grant",
            "finance/transfer_funds",
        ],
    );
    assert!(tools.status.success(), "{}", text(&tools.stderr));
    let out = text(&tools.stdout);
    assert!(
        out.contains("crm.read_contact") && out.contains("finance.transfer_funds"),
        "{out}"
    );
    assert!(
        !out.contains("delete_record") && !out.contains("email.send"),
        "{out}"
    );
    assert!(out.contains("2 tools visible"), "{out}");
    assert!(text(&tools.stderr).contains("never-delete"));
    drop(w);

    // The demo directory is recreated on the next start; a foreign directory is refused.
    let again = start();
    assert!(
        exports(&again.stdout)
            .iter()
            .any(|(k, _)| k == "WARDEN_AGENT_KEY")
    );
    drop(again);
    let foreign = dir.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("important.txt"), "keep").unwrap();
    let refused = warden()
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("not a demo directory"));
    assert!(foreign.join("important.txt").exists());
}
