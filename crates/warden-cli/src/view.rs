//! Reading fields of the admin API's JSON answers for tables.

use serde_json::Value;

/// The string at `k`, or `""`.
pub fn s<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The strings of the array at `k`, joined with `sep` (`""` when there is none).
pub fn joined(v: &Value, k: &str, sep: &str) -> String {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(sep)
        })
        .unwrap_or_default()
}
