//! Every RFC 9162 vector in `../shared/vectors/merkle` (transparency-dev's inclusion and
//! consistency cases, with all their negative mutations): a proof verifies exactly when the
//! vector says it should.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use warden_audit::merkle::{verify_consistency, verify_inclusion};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/merkle")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        panic!("the Merkle vectors are missing at {}", dir.display());
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn b64(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap_or("")).unwrap()
}

fn proof(v: &Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map_or_else(Vec::new, |a| a.iter().map(b64).collect())
}

fn run(kind: &str) -> usize {
    let mut all = Vec::new();
    files(&vectors().join(kind), &mut all);
    all.sort();
    let mut failures = Vec::new();
    for p in &all {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let got = if kind == "inclusion" {
            verify_inclusion(
                v["leafIdx"].as_u64().unwrap(),
                v["treeSize"].as_u64().unwrap(),
                &b64(&v["leafHash"]),
                &proof(&v["proof"]),
                &b64(&v["root"]),
            )
        } else {
            verify_consistency(
                v["size1"].as_u64().unwrap(),
                v["size2"].as_u64().unwrap(),
                &proof(&v["proof"]),
                &b64(&v["root1"]),
                &b64(&v["root2"]),
            )
        };
        if got.is_err() != v["wantErr"].as_bool().unwrap() {
            failures.push(format!("{}: {got:?}", p.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing vectors:\n{}",
        failures.len(),
        failures.join("\n")
    );
    all.len()
}

#[test]
fn every_inclusion_vector() {
    assert!(run("inclusion") > 50);
}

#[test]
fn every_consistency_vector() {
    assert!(run("consistency") > 50);
}
