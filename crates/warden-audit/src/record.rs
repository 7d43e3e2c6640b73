//! What one audit record says (AU-1, ID-4). Built by the decision path from the decision
//! value; the audit crate only writes it down, it never decides.
//!
//! Three kinds: a `decision` for every request Warden decided (allow and deny, including
//! requests refused before the policy was asked: unauthenticated, malformed), an `outcome`
//! that follows an allowed call with what the upstream answered, and an `event` for each
//! change of state (agent created, suspended, revoked, key rotated, policy set loaded,
//! revocations, kills, approvals, gaps in the log itself).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// One record. Serialised with a `kind` member; canonicalised (RFC 8785) into the leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Decision(Box<DecisionRecord>),
    Outcome(OutcomeRecord),
    Event(EventRecord),
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Decision(_) => "decision",
            Self::Outcome(_) => "outcome",
            Self::Event(_) => "event",
        }
    }

    /// Unix time in milliseconds.
    pub fn time_ms(&self) -> i64 {
        match self {
            Self::Decision(d) => d.time_ms,
            Self::Outcome(o) => o.time_ms,
            Self::Event(e) => e.time_ms,
        }
    }

    /// The agent the record is about, if any.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Self::Decision(d) => d.agent.as_deref(),
            Self::Outcome(o) => o.agent.as_deref(),
            Self::Event(e) => e.agent.as_deref(),
        }
    }

    pub fn task(&self) -> Option<&str> {
        match self {
            Self::Decision(d) => d.task.as_deref(),
            Self::Outcome(_) | Self::Event(_) => None,
        }
    }

    /// `allow`, `deny`, `require_approval` for a decision; the outcome's status or the
    /// event's name otherwise.
    pub fn decision(&self) -> &str {
        match self {
            Self::Decision(d) => &d.decision,
            Self::Outcome(o) => &o.status,
            Self::Event(e) => &e.event,
        }
    }
}

/// A decision on one request (AU-1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub time_ms: i64,
    /// Where the request came in: `mcp`, `token`, `authzen`.
    pub endpoint: String,
    /// How the caller was authenticated: `token`, `local:<agent>`, `stdio:<agent>`, or
    /// `none` when it was not.
    pub via: String,
    /// The acting agent (the token's `client_id`); absent when unauthenticated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub sponsors: Vec<String>,
    /// The human the task acts for (ID-4: the log shows the agent acted, not the human).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub on_behalf_of: Option<String>,
    /// The agents that delegated to this one, nearest first.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub delegation: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub task: Option<String>,
    /// The token's id: which credential made the request.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_id: Option<String>,
    /// `call_tool`, `read_resource`, `get_prompt`, `list_tools`, `initialize`, ... or
    /// `request` when the request was refused before its action was known.
    pub action: String,
    /// `<upstream>/<name>`, or the endpoint for requests without one.
    pub resource: String,
    /// SHA-256 (hex) of the canonical arguments.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub args_digest: Option<String>,
    /// The arguments with secrets redacted (see [`redact`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub args: Option<Value>,
    /// `allow`, `deny` or `require_approval`.
    pub decision: String,
    /// The stable reason id the caller was given (`allowed`, `not_in_task`, ...).
    pub reason_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub policies: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub policy_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub reasons: Vec<String>,
    /// What the agent said it was doing (`_meta["warden/reason"]`, `Warden-Reason`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stated_reason: Option<String>,
    /// Content-inspection findings on the arguments.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub findings: Vec<Value>,
    /// Time from the request's arrival to the decision.
    pub latency_us: u64,
}

/// What happened to an allowed call upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub time_ms: i64,
    /// The sequence number of the decision record this completes.
    pub decision_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<String>,
    pub resource: String,
    /// `ok`, `error` (a JSON-RPC error from upstream), `failed` (no answer).
    pub status: String,
    /// The upstream's HTTP status, where there was one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http_status: Option<u16>,
    /// Time from the forward to the upstream's answer.
    pub latency_us: u64,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub findings: Vec<Value>,
}

/// A change of state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub time_ms: i64,
    /// `agent_created`, `agent_suspended`, `agent_resumed`, `agent_revoked`,
    /// `key_rotated`, `sponsor_added`, `sponsor_removed`, `autonomy_changed`,
    /// `policy_loaded`, `revoked`, `audit_gap`, `server_started`, ...
    pub event: String,
    /// Who did it: an admin credential's name, `warden` for Warden itself, `cli` for an
    /// offline command.
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Event-specific facts (the policy set's hash, the revoked token's id, ...).
    #[serde(skip_serializing_if = "Map::is_empty", default)]
    pub details: Map<String, Value>,
}

impl EventRecord {
    pub fn new(time_ms: i64, event: &str, actor: &str) -> Self {
        Self {
            time_ms,
            event: event.to_owned(),
            actor: actor.to_owned(),
            ..Self::default()
        }
    }

    pub fn agent(mut self, agent: &str) -> Self {
        self.agent = Some(agent.to_owned());
        self
    }

    pub fn reason(mut self, reason: &str) -> Self {
        if !reason.is_empty() {
            self.reason = Some(reason.to_owned());
        }
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// SHA-256 (hex) of the canonical JSON of `args`.
pub fn args_digest(args: &Map<String, Value>) -> String {
    let mut bytes = Vec::with_capacity(128);
    crate::jcs::write_map(args, &mut bytes);
    hex::encode(Sha256::digest(&bytes))
}

/// Longest string kept whole in a redacted argument; longer ones are cut.
const MAX_KEPT: usize = 256;

/// Member names whose values are never written down: the built-in list, plus `extra`
/// (configured, `[audit] redact_keys`), each matched case-insensitively as a substring.
fn secret_name(name: &str, extra: &[String]) -> bool {
    const NAMES: [&str; 11] = [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "authorization",
        "credential",
        "private_key",
        "privatekey",
        "cookie",
    ];
    let lower = name.to_ascii_lowercase();
    NAMES.iter().any(|n| lower.contains(n))
        || extra
            .iter()
            .any(|n| lower.contains(n.to_ascii_lowercase().as_str()))
}

/// The arguments as the audit record keeps them: structure, numbers, booleans and short
/// strings as they were (policy decides on them; an auditor must see them); values of
/// members named like secrets (`password`, `token`, `api_key`, ...) replaced by
/// `"[redacted]"`; long strings cut to 256 characters with their length noted. Content
/// inspection (DLP) masks what it finds on top of this.
pub fn redact(args: &Map<String, Value>) -> Value {
    redact_with(args, &[])
}

/// [`redact`], also blanking members whose names contain one of `extra`.
pub fn redact_with(args: &Map<String, Value>, extra: &[String]) -> Value {
    Value::Object(redact_map(args, extra))
}

fn redact_map(m: &Map<String, Value>, extra: &[String]) -> Map<String, Value> {
    m.iter()
        .map(|(k, v)| {
            let v = if secret_name(k, extra) && !v.is_null() {
                Value::String("[redacted]".into())
            } else {
                redact_value(v, extra)
            };
            (k.clone(), v)
        })
        .collect()
}

fn redact_value(v: &Value, extra: &[String]) -> Value {
    match v {
        Value::String(s) if s.chars().count() > MAX_KEPT => {
            let cut: String = s.chars().take(MAX_KEPT).collect();
            Value::String(format!("{cut}… [{} characters]", s.chars().count()))
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| redact_value(x, extra)).collect()),
        Value::Object(m) => Value::Object(redact_map(m, extra)),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_secret_members_and_cuts_long_strings() {
        let long = "x".repeat(300);
        let args = json!({
            "to": "bob@example.com",
            "amount": 250,
            "auth": {"apiKey": "sk-123", "user": "alice"},
            "Password": "hunter2",
            "body": long,
        });
        let r = redact(args.as_object().unwrap());
        assert_eq!(r["to"], "bob@example.com");
        assert_eq!(r["amount"], 250);
        assert_eq!(r["auth"]["apiKey"], "[redacted]");
        assert_eq!(r["auth"]["user"], "alice");
        assert_eq!(r["Password"], "[redacted]");
        assert!(r["body"].as_str().unwrap().ends_with("… [300 characters]"));
        assert!(!r.to_string().contains("hunter2"));
    }

    #[test]
    fn configured_names_are_redacted_too() {
        let args = json!({"Account_Number": "DE89370400440532013000", "items": [{"iban": "x"}]});
        let extra = vec!["account_number".to_owned(), "IBAN".to_owned()];
        let r = redact_with(args.as_object().unwrap(), &extra);
        assert_eq!(r["Account_Number"], "[redacted]");
        assert_eq!(r["items"][0]["iban"], "[redacted]");
        let plain = redact(args.as_object().unwrap());
        assert_eq!(plain["Account_Number"], "DE89370400440532013000");
    }

    #[test]
    fn the_digest_ignores_member_order() {
        let a = json!({"a": 1, "b": [true, "x"]});
        let b: Value = serde_json::from_str(r#"{"b":[true,"x"],"a":1}"#).unwrap();
        assert_eq!(
            args_digest(a.as_object().unwrap()),
            args_digest(b.as_object().unwrap())
        );
        assert_eq!(args_digest(&Map::new()).len(), 64);
    }

    #[test]
    fn records_round_trip_with_their_kind() {
        let r = Record::Event(EventRecord::new(5, "agent_created", "admin").agent("a1"));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "event");
        assert_eq!(serde_json::from_value::<Record>(v).unwrap(), r);
    }
}
