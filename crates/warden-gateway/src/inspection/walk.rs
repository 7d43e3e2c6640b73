//! Visiting the strings of a JSON value, with their JSON Pointer (RFC 6901) path.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Members never inspected: protocol metadata and binary payloads.
fn skipped(key: &str, parent: &Map<String, Value>) -> bool {
    match key {
        "_meta" | "mimeType" | "blob" => true,
        // Base64 image and audio content.
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

/// Calls `f(path, text)` for every string value under `map` (keys are not visited).
pub fn strings(map: &Map<String, Value>, base: &str, f: &mut dyn FnMut(&str, &str)) {
    let mut path = String::from(base);
    visit_map(map, &mut path, f);
}

fn visit_map(map: &Map<String, Value>, path: &mut String, f: &mut dyn FnMut(&str, &str)) {
    for (k, v) in map {
        if skipped(k, map) {
            continue;
        }
        let len = path.len();
        push_key(path, k);
        visit(v, path, f);
        path.truncate(len);
    }
}

fn visit(v: &Value, path: &mut String, f: &mut dyn FnMut(&str, &str)) {
    match v {
        Value::String(s) => f(path, s),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "/{i}");
                visit(x, path, f);
                path.truncate(len);
            }
        }
        Value::Object(m) => visit_map(m, path, f),
        _ => {}
    }
}

/// Calls `f(path, text)` for every string value under `map`, which may rewrite it.
pub fn strings_mut(map: &mut Map<String, Value>, base: &str, f: &mut dyn FnMut(&str, &mut String)) {
    let mut path = String::from(base);
    visit_map_mut(map, &mut path, f);
}

fn visit_map_mut(
    map: &mut Map<String, Value>,
    path: &mut String,
    f: &mut dyn FnMut(&str, &mut String),
) {
    let skip: Vec<bool> = map.keys().map(|k| skipped(k, map)).collect();
    for ((k, v), skip) in map.iter_mut().zip(skip) {
        if skip {
            continue;
        }
        let len = path.len();
        push_key(path, k);
        visit_mut(v, path, f);
        path.truncate(len);
    }
}

fn visit_mut(v: &mut Value, path: &mut String, f: &mut dyn FnMut(&str, &mut String)) {
    match v {
        Value::String(s) => f(path, s),
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                let len = path.len();
                let _ = write!(path, "/{i}");
                visit_mut(x, path, f);
                path.truncate(len);
            }
        }
        Value::Object(m) => visit_map_mut(m, path, f),
        _ => {}
    }
}

/// Every string value under `map`, `_meta` and binary payloads included (for masking).
pub fn strings_all(map: &Map<String, Value>, f: &mut dyn FnMut(&str)) {
    fn go(v: &Value, f: &mut dyn FnMut(&str)) {
        match v {
            Value::String(s) => f(s),
            Value::Array(a) => a.iter().for_each(|x| go(x, f)),
            Value::Object(m) => m.values().for_each(|x| go(x, f)),
            _ => {}
        }
    }
    map.values().for_each(|v| go(v, f));
}

/// [`strings_all`], each string rewritable.
pub fn strings_all_mut(map: &mut Map<String, Value>, f: &mut dyn FnMut(&mut String)) {
    fn go(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
        match v {
            Value::String(s) => f(s),
            Value::Array(a) => a.iter_mut().for_each(|x| go(x, f)),
            Value::Object(m) => m.values_mut().for_each(|x| go(x, f)),
            _ => {}
        }
    }
    map.values_mut().for_each(|v| go(v, f));
}
