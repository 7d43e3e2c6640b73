//! `warden agent ...` against a real data directory, as an operator uses it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::warden;
use serde_json::Value;

fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = warden()
        .args(["agent", "--data-dir"])
        .arg(dir.join("data"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = run(dir, &all);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn agent_lifecycle_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let created = json(
        d,
        &[
            "create",
            "crm-bot",
            "--sponsor",
            "dana@example.com",
            "--sponsor",
            "lee@example.com",
            "--autonomy",
            "junior",
            "--purpose",
            "answer customers",
        ],
    );
    assert_eq!(created["agent"]["state"], "active");
    assert_eq!(created["agent"]["dpop_required"], true);
    let key_file = d.join("crm-bot.jwk");
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(key["kid"], created["agent"]["keys"][0]["jwk"]["kid"]);
    assert!(key["d"].is_string());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Only the public key is stored.
    let shown = json(d, &["show", "crm-bot"]);
    assert!(shown["keys"][0]["jwk"].get("d").is_none());
    assert!(
        !std::fs::read(d.join("data/warden.db"))
            .unwrap()
            .windows(key["d"].as_str().unwrap().len())
            .any(|w| w == key["d"].as_str().unwrap().as_bytes())
    );

    // The table view for humans.
    let (ok, table, _) = run(d, &["list"]);
    assert!(
        ok && table.contains("crm-bot") && table.contains("DPoP-bound"),
        "{table}"
    );

    // Removing the last sponsor suspends; resume needs a sponsor.
    json(d, &["sponsor", "remove", "crm-bot", "dana@example.com"]);
    let a = json(d, &["sponsor", "remove", "crm-bot", "lee@example.com"]);
    assert_eq!(a["state"], "suspended");
    let (ok, _, err) = run(d, &["resume", "crm-bot"]);
    assert!(!ok && err.contains("no sponsor"), "{err}");
    json(d, &["sponsor", "add", "crm-bot", "kim@example.com"]);
    assert_eq!(json(d, &["resume", "crm-bot"])["state"], "active");

    // Rotation keeps the old key for the grace period.
    let a = json(
        d,
        &[
            "rotate-key",
            "crm-bot",
            "--grace",
            "120",
            "--key-out",
            "new.jwk",
        ],
    );
    assert_eq!(a["keys"].as_array().unwrap().len(), 2);
    assert!(a["keys"][0]["not_after"].is_null());
    assert!(a["keys"][1]["not_after"].is_i64());
    assert!(d.join("new.jwk").exists());

    // A bearer-only agent is marked as weaker.
    let weak = json(
        d,
        &[
            "create",
            "legacy",
            "--sponsor",
            "ops@example.com",
            "--no-dpop",
        ],
    );
    assert_eq!(weak["agent"]["dpop_required"], false);
    let (_, table, _) = run(d, &["show", "legacy"]);
    assert!(table.contains("weaker"), "{table}");

    // Revocation is final.
    assert_eq!(json(d, &["revoke", "crm-bot"])["state"], "revoked");
    let (ok, _, err) = run(d, &["resume", "crm-bot"]);
    assert!(!ok && err.contains("revocation is final"), "{err}");

    // Errors say what is wrong; no key file is left behind by a failed create.
    let (ok, _, err) = run(
        d,
        &[
            "create",
            "legacy",
            "--sponsor",
            "x@example.com",
            "--key-out",
            "dup.jwk",
        ],
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    assert!(!d.join("dup.jwk").exists());
    let (ok, _, err) = run(d, &["show", "ghost"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    assert_eq!(json(d, &["list"]).as_array().unwrap().len(), 2);
}
