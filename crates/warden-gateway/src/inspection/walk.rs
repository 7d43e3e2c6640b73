//! Visiting the strings of a JSON value, with their JSON Pointer (RFC 6901) path.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Which strings to visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every string (arguments; masking for the audit trail).
    All,
    /// Content only: protocol metadata (`_meta`, `mimeType`) and binary payloads (`blob`,
    /// base64 image and audio `data`) are left out (results).
    Content,
}

fn skipped(scope: Scope, key: &str, parent: &Map<String, Value>) -> bool {
    if scope == Scope::All {
        return false;
    }
    match key {
        "_meta" | "mimeType" | "blob" => true,
        "data" => parent
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t == "image" || t == "audio"),
        _ => false,
    }
}

fn push_key(path: &mut String, key: &str) {
    path.push('/');
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Calls `f(path, text)` for every string value in `scope` under `map` (keys are not
/// visited).
pub fn strings(map: &Map<String, Value>, scope: Scope, base: &str, f: &mut dyn FnMut(&str, &str)) {
    fn visit_map(
        map: &Map<String, Value>,
        scope: Scope,
        path: &mut String,
        f: &mut dyn FnMut(&str, &str),
    ) {
        for (k, v) in map {
            if skipped(scope, k, map) {
                continue;
            }
            let len = path.len();
            push_key(path, k);
            visit(v, scope, path, f);
            path.truncate(len);
        }
    }
    fn visit(v: &Value, scope: Scope, path: &mut String, f: &mut dyn FnMut(&str, &str)) {
        match v {
            Value::String(s) => f(path, s),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "/{i}");
                    visit(x, scope, path, f);
                    path.truncate(len);
                }
            }
            Value::Object(m) => visit_map(m, scope, path, f),
            _ => {}
        }
    }
    let mut path = String::from(base);
    visit_map(map, scope, &mut path, f);
}

/// [`strings`], each string rewritable.
pub fn strings_mut(
    map: &mut Map<String, Value>,
    scope: Scope,
    base: &str,
    f: &mut dyn FnMut(&str, &mut String),
) {
    fn visit_map(
        map: &mut Map<String, Value>,
        scope: Scope,
        path: &mut String,
        f: &mut dyn FnMut(&str, &mut String),
    ) {
        let skip: Vec<bool> = map.keys().map(|k| skipped(scope, k, map)).collect();
        for ((k, v), skip) in map.iter_mut().zip(skip) {
            if skip {
                continue;
            }
            let len = path.len();
            push_key(path, k);
            visit(v, scope, path, f);
            path.truncate(len);
        }
    }
    fn visit(v: &mut Value, scope: Scope, path: &mut String, f: &mut dyn FnMut(&str, &mut String)) {
        match v {
            Value::String(s) => f(path, s),
            Value::Array(a) => {
                for (i, x) in a.iter_mut().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "/{i}");
                    visit(x, scope, path, f);
                    path.truncate(len);
                }
            }
            Value::Object(m) => visit_map(m, scope, path, f),
            _ => {}
        }
    }
    let mut path = String::from(base);
    visit_map(map, scope, &mut path, f);
}
