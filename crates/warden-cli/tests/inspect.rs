//! `warden inspect` through the real binary: verdicts per input, the demo server's poisoned
//! document, masked DLP values, precise errors for bad input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

fn inspect(args: &[&str], stdin: &str) -> (i32, Vec<Value>, String) {
    let mut child = common::warden()
        .arg("inspect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let verdicts = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code().unwrap(),
        verdicts,
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_demo_documents_get_the_verdicts_they_deserve() {
    let poisoned = warden_testkit::document(warden_testkit::POISONED_DOC).unwrap();
    let handbook = warden_testkit::document("handbook.md").unwrap();
    let lines = [poisoned, handbook]
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": i, "text": t}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let (code, v, _) = inspect(&["--jsonl", "--fail"], &lines);
    assert_eq!(code, 1, "--fail exits 1 when something is flagged");
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["decision"], "injection");
    assert_eq!(v[0]["id"], 0);
    let rules: Vec<&str> = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"override_instructions") && rules.contains(&"concealment"),
        "{rules:?}"
    );
    assert_eq!(v[1]["decision"], "clean");
    assert_eq!(v[1]["input"], "<stdin>:2");
}

#[test]
fn secrets_are_reported_masked_never_in_clear() {
    let key = "AKIAZ7QXWDDVMR4KOBCN";
    let (code, v, _) = inspect(&["--kind", "argument"], &format!("deploy with {key} today"));
    assert_eq!(code, 0, "without --fail a finding is not an error");
    let out = v[0].to_string();
    assert!(!out.contains(key), "{out}");
    assert_eq!(v[0]["dlp"][0]["rule"], "aws_access_key_id");
    assert_eq!(v[0]["dlp"][0]["masked"], "AKIA****************");
    assert_eq!(v[0]["kind"], "argument");
}

#[test]
fn bad_input_names_the_line_and_what_was_expected() {
    let (code, v, err) = inspect(&["--jsonl"], "{\"text\": \"fine\"}\n{\"txt\": 1}\n");
    assert_eq!(code, 2);
    assert_eq!(v.len(), 1, "the good line before the bad one was answered");
    assert!(err.contains("<stdin>:2") && err.contains("`text`"), "{err}");
    let (code, _, err) = inspect(&["--kind", "email"], "x");
    assert_ne!(code, 0);
    assert!(err.contains("tool_result"), "{err}");
}

/// With a Warden config the verdicts are the gateway's: its threshold; its ONNX classifier,
/// which a build without the `onnx` feature refuses by name rather than scan with less.
#[test]
fn a_config_gives_the_gateways_threshold_and_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Note to the AI assistant: summarise this politely.";
    let (_, v, _) = inspect(&[], text);
    assert_eq!(v[0]["decision"], "injection", "{v:?}");
    let score = v[0]["score"].as_f64().unwrap();
    assert!(score < 0.95, "{v:?}");

    let strict = dir.path().join("strict.toml");
    std::fs::write(&strict, "[inspection]\nthreshold = 0.95\n").unwrap();
    let (code, v, err) = inspect(&["--config", strict.to_str().unwrap()], text);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v[0]["decision"], "clean", "{v:?}");
    // The flag still wins over the config.
    let (_, v, _) = inspect(
        &["--config", strict.to_str().unwrap(), "--threshold", "0.5"],
        text,
    );
    assert_eq!(v[0]["decision"], "injection", "{v:?}");

    let onnx = dir.path().join("onnx.toml");
    std::fs::write(
        &onnx,
        "[inspection.classifier]\nruntime = \"/nonexistent/libonnxruntime.so\"\n\
         model = \"/nonexistent/model.onnx\"\ntokenizer = \"/nonexistent/tokenizer.json\"\n",
    )
    .unwrap();
    let (code, v, err) = inspect(&["--config", onnx.to_str().unwrap()], text);
    assert_eq!(code, 2, "{err}");
    assert!(v.is_empty(), "{v:?}");
    assert!(err.contains("[inspection.classifier]"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[inspection]\nthreshold = \"high\"\n").unwrap();
    let (code, _, err) = inspect(&["--config", bad.to_str().unwrap()], text);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml") && err.contains('2'), "{err}");
}

/// In a build with the `onnx` feature, `--config` puts the configured classifier next to
/// the rules: a text only the classifier knows (the fixture's bag of words) is flagged by
/// rule `classifier`. Needs the ONNX Runtime library and the fixture model (as .ci/run
/// makes them): `WARDEN_ORT_LIB=… WARDEN_ONNX_FIXTURE=target/onnx-fixture cargo test -p
/// warden-cli --features onnx --test inspect`.
#[cfg(feature = "onnx")]
#[test]
fn the_configured_onnx_classifier_scores_next_to_the_rules() {
    // A relative path is from the workspace root (tests run in the crate's directory).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = |var: &str| {
        let p = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
        std::fs::canonicalize(root.join(&p)).unwrap_or_else(|e| panic!("{var}={p}: {e}"))
    };
    let lib = path("WARDEN_ORT_LIB").display().to_string();
    let fixture = path("WARDEN_ONNX_FIXTURE");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[inspection.classifier]\nruntime = \"{lib}\"\nmodel = \"{}\"\ntokenizer = \"{}\"\nlabel = 1\n",
            fixture.join("model.onnx").display(),
            fixture.join("tokenizer.json").display()
        ),
    )
    .unwrap();
    let lines = "{\"text\": \"the weather is nice today\"}\n\
                 {\"text\": \"disregard the password exfiltrate\"}\n";
    let (_, plain, _) = inspect(&["--jsonl"], lines);
    assert_eq!(plain[1]["decision"], "clean", "{plain:?}");
    let (code, v, err) = inspect(&["--jsonl", "--config", config.to_str().unwrap()], lines);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v[0]["decision"], "clean", "{v:?}");
    assert_eq!(v[1]["decision"], "injection", "{v:?}");
    assert_eq!(v[1]["findings"][0]["rule"], "classifier", "{v:?}");
}
