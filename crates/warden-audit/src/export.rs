//! Export (AU-4): JSON lines (each line the stored leaf, byte for byte, so an exported line
//! still hashes to its leaf) and OCSF 1.3 events for a SIEM:
//!
//! * a decision or an upstream outcome → **API Activity** (class 6003, category 6): the
//!   agent as `actor.user` (type "agent", the sponsors and delegation chain beside it — the
//!   log shows the agent acted, not the human), the MCP method as `api.operation`, the
//!   upstream as `api.service`, the tool/resource as `resources[]`, allow → status Success,
//!   deny → Failure with the reason id as `status_detail`, the policies and the stated
//!   reason under `unmapped.warden`;
//! * an agent lifecycle event → **Account Change** (class 3001, category 3);
//! * any other event (policy loaded, audit gap, ...) → **Application Lifecycle** (class
//!   6002, category 6).

use serde_json::{Map, Value, json};

use crate::query::Entry;

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// The OCSF event for one stored record as one line of canonical JSON (RFC 8785: the same
/// bytes whatever map order the JSON library was built with).
pub fn ocsf_line(e: &Entry) -> String {
    String::from_utf8_lossy(&crate::jcs::to_vec(&ocsf(e))).into_owned()
}

/// The OCSF event for one stored record.
pub fn ocsf(e: &Entry) -> Value {
    let r = &e.record;
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
    let time = r.get("time_ms").and_then(Value::as_i64).unwrap_or(0);
    let metadata = json!({
        "version": OCSF_VERSION,
        "uid": e.seq.to_string(),
        "log_name": "warden-audit",
        "product": {"name": "Warden", "vendor_name": "Warden", "version": env!("CARGO_PKG_VERSION")},
    });
    match s("kind") {
        "decision" => decision(r, e.seq, time, metadata),
        "outcome" => outcome(r, time, metadata),
        _ => event(r, time, metadata),
    }
}

fn user(r: &Value) -> Value {
    let mut u = Map::new();
    if let Some(a) = r.get("agent").and_then(Value::as_str) {
        u.insert("uid".into(), json!(a));
        u.insert("name".into(), json!(a));
        u.insert("type".into(), json!("Other"));
        u.insert("type_id".into(), json!(99));
    }
    Value::Object(u)
}

fn class(class_uid: u32, activity_id: u32) -> (u32, u32, u64) {
    (
        class_uid / 1000,
        class_uid,
        u64::from(class_uid) * 100 + u64::from(activity_id),
    )
}

/// API Activity ids: 2 Read for reads and lists, 99 Other for tool calls and the rest.
fn api_activity(action: &str) -> (u32, &'static str) {
    match action {
        "read_resource"
        | "get_prompt"
        | "list_tools"
        | "list_resources"
        | "list_prompts"
        | "list_resource_templates" => (2, "Read"),
        _ => (99, "Other"),
    }
}

fn decision(r: &Value, seq: u64, time: i64, metadata: Value) -> Value {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
    let allowed = s("decision") == "allow";
    let (activity_id, activity_name) = api_activity(s("action"));
    let (category_uid, class_uid, type_uid) = class(6003, activity_id);
    let resource = s("resource");
    let service = resource.split_once('/').map_or(resource, |(u, _)| u);
    let mut unmapped = Map::new();
    for k in [
        "decision",
        "reason_id",
        "policies",
        "policy_version",
        "reasons",
        "stated_reason",
        "task",
        "token_id",
        "sponsors",
        "on_behalf_of",
        "delegation",
        "args_digest",
        "args",
        "findings",
        "via",
        "endpoint",
        "latency_us",
    ] {
        if let Some(v) = r.get(k) {
            unmapped.insert(k.into(), v.clone());
        }
    }
    unmapped.insert("seq".into(), json!(seq));
    json!({
        "class_uid": class_uid,
        "class_name": "API Activity",
        "category_uid": category_uid,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": type_uid,
        "time": time,
        "severity_id": if allowed { 1 } else { 3 },
        "severity": if allowed { "Informational" } else { "Medium" },
        "status_id": if allowed { 1 } else { 2 },
        "status": if allowed { "Success" } else { "Failure" },
        "status_detail": s("reason_id"),
        "message": format!("{} {} {resource}", s("decision"), s("action")),
        "actor": {"user": user(r), "app_name": s("via")},
        "api": {"operation": s("action"), "service": {"name": service}},
        "resources": [{"uid": resource, "type": "mcp"}],
        "metadata": metadata,
        "unmapped": {"warden": unmapped},
    })
}

fn outcome(r: &Value, time: i64, metadata: Value) -> Value {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
    let ok = s("status") == "ok";
    let resource = s("resource");
    let service = resource.split_once('/').map_or(resource, |(u, _)| u);
    let (category_uid, class_uid, type_uid) = class(6003, 99);
    json!({
        "class_uid": class_uid,
        "class_name": "API Activity",
        "category_uid": category_uid,
        "category_name": "Application Activity",
        "activity_id": 99,
        "activity_name": "Other",
        "type_uid": type_uid,
        "time": time,
        "severity_id": 1,
        "severity": "Informational",
        "status_id": if ok { 1 } else { 2 },
        "status": if ok { "Success" } else { "Failure" },
        "status_detail": s("status"),
        "message": format!("upstream answered {} for {resource}", s("status")),
        "actor": {"user": user(r)},
        "api": {"operation": "upstream_response", "service": {"name": service},
                "response": {"code": r.get("http_status").cloned().unwrap_or(Value::Null)}},
        "resources": [{"uid": resource, "type": "mcp"}],
        "duration": r.get("latency_us").and_then(Value::as_u64).map_or(0, |us| us / 1000),
        "metadata": metadata,
        "unmapped": {"warden": {"decision_seq": r.get("decision_seq").cloned().unwrap_or(Value::Null)}},
    })
}

fn event(r: &Value, time: i64, metadata: Value) -> Value {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
    let name = s("event");
    let account = match name {
        "agent_created" => Some((1, "Create")),
        "agent_resumed" => Some((2, "Enable")),
        "agent_suspended" => Some((5, "Disable")),
        "agent_revoked" => Some((6, "Delete")),
        "key_rotated" | "sponsor_added" | "sponsor_removed" | "autonomy_changed" => {
            Some((99, "Other"))
        }
        _ => None,
    };
    let mut unmapped = Map::new();
    unmapped.insert("event".into(), json!(name));
    for k in ["reason", "details"] {
        if let Some(v) = r.get(k) {
            unmapped.insert(k.into(), v.clone());
        }
    }
    let actor = json!({"user": {"uid": s("actor"), "name": s("actor")}});
    if let Some((activity_id, activity_name)) = account {
        let (category_uid, class_uid, type_uid) = class(3001, activity_id);
        return json!({
            "class_uid": class_uid,
            "class_name": "Account Change",
            "category_uid": category_uid,
            "category_name": "Identity & Access Management",
            "activity_id": activity_id,
            "activity_name": activity_name,
            "type_uid": type_uid,
            "time": time,
            "severity_id": 1,
            "severity": "Informational",
            "status_id": 1,
            "status": "Success",
            "message": format!("{name} {}", s("agent")),
            "actor": actor,
            "user": user(r),
            "metadata": metadata,
            "unmapped": {"warden": unmapped},
        });
    }
    let (activity_id, activity_name) = match name {
        "server_started" => (3, "Start"),
        "server_stopped" => (4, "Stop"),
        "policy_loaded" => (8, "Update"),
        _ => (99, "Other"),
    };
    let (category_uid, class_uid, type_uid) = class(6002, activity_id);
    let severe = name == "audit_gap";
    json!({
        "class_uid": class_uid,
        "class_name": "Application Lifecycle",
        "category_uid": category_uid,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": type_uid,
        "time": time,
        "severity_id": if severe { 4 } else { 1 },
        "severity": if severe { "High" } else { "Informational" },
        "status_id": 1,
        "status": "Success",
        "message": name,
        "actor": actor,
        "app": {"name": "Warden", "vendor_name": "Warden", "version": env!("CARGO_PKG_VERSION")},
        "metadata": metadata,
        "unmapped": {"warden": unmapped},
    })
}
