//! The labelled DLP set (`tests/data/dlp_cases.jsonl`): every rule has cases that must match
//! (with the exact value) and look-alikes that must not. Each case names the rule it is about;
//! a negative case only counts against that rule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

// scripts/fuzz.sh builds every test target of a fuzzed crate with coverage
// instrumentation; this links the libFuzzer runtime that instrumentation calls.
#[cfg(fuzzing)]
extern crate bolero as _;

use std::collections::BTreeMap;

use warden_inspect::{Inspector, Kind};

#[derive(serde::Deserialize)]
struct Case {
    rule: String,
    text: String,
    #[serde(rename = "match")]
    value: Option<String>,
}

fn cases() -> Vec<Case> {
    include_str!("data/dlp_cases.jsonl")
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("dlp_cases.jsonl:{}: {e}", i + 1))
        })
        .collect()
}

#[test]
fn every_rule_has_true_and_false_positive_cases() {
    let cases = cases();
    for (rule, _) in warden_inspect::dlp_rules() {
        let pos = cases
            .iter()
            .filter(|c| c.rule == rule && c.value.is_some())
            .count();
        let neg = cases
            .iter()
            .filter(|c| c.rule == rule && c.value.is_none())
            .count();
        assert!(
            pos >= 2 && neg >= 2,
            "{rule}: {pos} true and {neg} false-positive cases; need 2 of each"
        );
    }
    for c in &cases {
        assert!(
            warden_inspect::dlp_rules().any(|(r, _)| r == c.rule),
            "case for unknown rule {}",
            c.rule
        );
    }
}

#[test]
fn the_labelled_set_is_found_exactly() {
    let inspector = Inspector::new().unwrap();
    let mut failures = Vec::new();
    let mut per_rule: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new(); // tp, fp, fn
    let cases = cases();
    for c in &cases {
        let report = inspector.inspect(&c.text, Kind::ToolResult);
        let found: Vec<&str> = report
            .dlp
            .iter()
            .filter(|m| m.rule == c.rule)
            .map(|m| &c.text[m.span()])
            .collect();
        let e = per_rule.entry(c.rule.as_str()).or_default();
        match &c.value {
            Some(v) => {
                if found.contains(&v.as_str()) {
                    e.0 += 1;
                } else {
                    e.2 += 1;
                    failures.push(format!("missed {}: {:?} (found {found:?})", c.rule, c.text));
                }
                e.1 += found.iter().filter(|f| **f != v.as_str()).count() as u32;
            }
            None => {
                if !found.is_empty() {
                    e.1 += found.len() as u32;
                    failures.push(format!(
                        "false positive {}: {:?} -> {found:?}",
                        c.rule, c.text
                    ));
                }
            }
        }
    }
    for (rule, (tp, fp, fn_)) in &per_rule {
        println!("{rule:24} tp {tp:2} fp {fp:2} fn {fn_:2}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn masking_hides_every_value_and_keeps_the_rest() {
    let inspector = Inspector::new().unwrap();
    for c in cases().iter().filter(|c| c.value.is_some()) {
        let value = c.value.as_deref().unwrap();
        let report = inspector.inspect(&c.text, Kind::Argument);
        let masked = report.masked(&c.text);
        assert!(
            !masked.contains(value),
            "{}: {value:?} survives masking in {masked:?}",
            c.rule
        );
        assert_eq!(
            masked.len(),
            c.text.len(),
            "{}: masking keeps the length",
            c.rule
        );
        for m in &report.dlp {
            assert!(
                !m.masked.contains(&c.text[m.span()]) || m.masked.is_empty(),
                "{}",
                c.rule
            );
        }
    }
}
