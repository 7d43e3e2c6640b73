//! Policy tests as data (PE-5): a YAML (or JSON) file of request → expected decision cases,
//! like `opa test`. Format, documented in `docs/policy-tests.md`:
//!
//! ```yaml
//! policies: .              # the policy directory, relative to this file (default: its dir)
//! authzen:                 # optional: how AuthZEN cases map onto Cedar
//!   namespace: Todo
//!   types: { user: User }
//! defaults:                # optional: merged into every `request` (the case wins)
//!   autonomy: senior
//!   time: 1790000000
//! cases:
//!   - name: reads a contact
//!     request: { agent: crm-bot, action: call_tool, resource: crm/get_contact }
//!     expect: allow                 # allow | deny | require_approval
//!     determining: [crm-read]       # optional: exactly these policies decided it
//!   - name: an AuthZEN case
//!     authzen: { subject: {...}, action: {...}, resource: {...} }
//!     expect: deny
//! ```

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use warden_core::{Decision, Effect, PolicyId};

use crate::authzen::{self, Mapping};
use crate::request::ActionRequest;
use crate::snapshot::PolicySnapshot;

/// A parsed test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The policy directory, relative to the test file.
    #[serde(default)]
    pub policies: Option<String>,
    #[serde(default)]
    pub authzen: Option<MappingSpec>,
    #[serde(default)]
    pub defaults: serde_json::Map<String, Value>,
    pub cases: Vec<Case>,
}

/// The AuthZEN mapping, as written in a test file or config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub types: HashMap<String, String>,
}

impl From<&MappingSpec> for Mapping {
    fn from(s: &MappingSpec) -> Self {
        Mapping {
            namespace: s.namespace.clone(),
            types: s.types.clone(),
        }
    }
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub request: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub authzen: Option<Value>,
    pub expect: Effect,
    #[serde(default)]
    pub determining: Option<Vec<String>>,
}

/// A test file that cannot be read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct TestFileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses a test file (YAML; JSON is YAML too).
pub fn parse(file: &str, text: &str) -> Result<TestFile, TestFileError> {
    serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        TestFileError {
            file: file.to_owned(),
            line,
            column,
            message: e.to_string(),
        }
    })
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub expected: Effect,
    pub decision: Decision,
    /// Empty when the case passed; otherwise what differed.
    pub failures: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every case against a loaded policy set.
pub fn run(snapshot: &PolicySnapshot, file: &TestFile) -> Vec<CaseResult> {
    let mapping: Mapping = file.authzen.as_ref().map(Mapping::from).unwrap_or_default();
    file.cases
        .iter()
        .map(|case| run_case(snapshot, &mapping, &file.defaults, case))
        .collect()
}

fn run_case(
    snapshot: &PolicySnapshot,
    mapping: &Mapping,
    defaults: &serde_json::Map<String, Value>,
    case: &Case,
) -> CaseResult {
    let mut failures = Vec::new();
    let decision = match (&case.request, &case.authzen) {
        (Some(req), None) => {
            let mut merged = defaults.clone();
            merged.extend(req.clone());
            match serde_json::from_value::<ActionRequest>(Value::Object(merged)) {
                Ok(r) => snapshot.evaluate(&r),
                Err(e) => {
                    failures.push(format!("request is not valid: {e}"));
                    Decision::invalid_request(e.to_string())
                }
            }
        }
        (None, Some(body)) => match authzen::parse_evaluation(body) {
            Ok(e) => snapshot.evaluate_authzen(mapping, &e),
            Err(e) => {
                failures.push(format!("authzen request is not valid: {e}"));
                Decision::invalid_request(e.0)
            }
        },
        _ => {
            failures.push("a case needs exactly one of `request` and `authzen`".into());
            Decision::invalid_request("no request")
        }
    };
    if failures.is_empty() {
        if decision.effect != case.expect {
            failures.push(format!(
                "expected {}, got {} ({})",
                case.expect,
                decision.effect,
                decision.reasons.join("; ")
            ));
        }
        if let Some(want) = &case.determining {
            let mut want: Vec<PolicyId> = want.iter().map(PolicyId::new).collect();
            want.sort();
            let mut got = decision.determining.clone();
            got.sort();
            if want != got {
                failures.push(format!(
                    "expected determining policies {want:?}, got {got:?}"
                ));
            }
        }
    }
    CaseResult {
        name: case.name.clone(),
        expected: case.expect,
        decision,
        failures,
    }
}
