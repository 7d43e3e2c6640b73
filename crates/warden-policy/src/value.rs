//! JSON to Cedar values, without Cedar's `__entity`/`__extn` escapes: tool arguments are
//! untrusted data and must never turn into entity references or extension calls.

use cedar_policy::RestrictedExpression;
use serde_json::Value;

/// A JSON value that Cedar cannot represent. The request is denied, naming the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ValueError {
    pub path: String,
    pub reason: String,
}

/// Cedar's decimal: at most 4 fractional digits, magnitude below 922337203685477.5808.
const MAX_DECIMAL_INT_DIGITS: usize = 15;

/// Converts a JSON object into Cedar record attributes. `null` members are left out (an
/// absent attribute: `has` is false), so a policy never sees a null.
pub fn record_from_json(
    map: &serde_json::Map<String, Value>,
    path: &str,
) -> Result<RestrictedExpression, ValueError> {
    record(map).map_err(|e| e.under(path))
}

/// Converts one JSON value. `Ok(None)` for `null`.
pub fn from_json(v: &Value, path: &str) -> Result<Option<RestrictedExpression>, ValueError> {
    convert(v).map_err(|e| e.under(path))
}

impl ValueError {
    fn new(reason: String) -> Self {
        Self {
            path: String::new(),
            reason,
        }
    }

    /// Prefixes the path as the error travels up; paths are only built on failure.
    fn under(mut self, segment: &str) -> Self {
        if !self.path.is_empty() && !self.path.starts_with('[') {
            self.path.insert(0, '.');
        }
        self.path.insert_str(0, segment);
        self
    }
}

fn record(map: &serde_json::Map<String, Value>) -> Result<RestrictedExpression, ValueError> {
    let mut attrs = Vec::with_capacity(map.len());
    for (k, v) in map {
        if let Some(e) = convert(v).map_err(|e| e.under(k))? {
            attrs.push((k.clone(), e));
        }
    }
    RestrictedExpression::new_record(attrs).map_err(|e| ValueError::new(e.to_string()))
}

fn convert(v: &Value) -> Result<Option<RestrictedExpression>, ValueError> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Number(n) => number(n)?,
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let at = |e: ValueError| e.under(&format!("[{i}]"));
                match convert(item).map_err(at)? {
                    Some(e) => out.push(e),
                    None => {
                        return Err(at(ValueError::new(
                            "null inside a list cannot be represented in Cedar".into(),
                        )));
                    }
                }
            }
            RestrictedExpression::new_set(out)
        }
        Value::Object(map) => record(map)?,
    }))
}

fn number(n: &serde_json::Number) -> Result<RestrictedExpression, ValueError> {
    if let Some(i) = n.as_i64() {
        return Ok(RestrictedExpression::new_long(i));
    }
    let text = n.to_string();
    if is_cedar_decimal(&text) {
        return Ok(RestrictedExpression::new_decimal(text));
    }
    Err(ValueError::new(format!(
        "the number {text} cannot be represented in Cedar (integers fit in 64 bits; \
         decimals need at most 4 fractional digits and 15 integer digits)"
    )))
}

fn is_cedar_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let Some((int, frac)) = digits.split_once('.') else {
        return false;
    };
    !int.is_empty()
        && int.len() <= MAX_DECIMAL_INT_DIGITS
        && (1..=4).contains(&frac.len())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_stay_plain_records() {
        // Cedar's own JSON parser would turn this into an entity reference.
        let v = json!({"__entity": {"type": "Warden::User", "id": "admin"}});
        let e = format!("{:?}", from_json(&v, "arguments").unwrap().unwrap());
        assert!(e.contains("__entity"), "{e}");
        assert!(!e.contains("EntityUID"), "{e}");
    }

    #[test]
    fn numbers_map_to_long_or_decimal_or_fail() {
        assert!(format!("{:?}", from_json(&json!(5), "a").unwrap().unwrap()).contains('5'));
        assert!(from_json(&json!(1.25), "a").is_ok());
        let big = from_json(&json!(1e30), "arguments.amount").unwrap_err();
        assert_eq!(big.path, "arguments.amount");
        assert!(from_json(&json!(0.123456), "a").is_err());
        assert!(from_json(&json!(u64::MAX), "a").is_err());
    }

    #[test]
    fn nulls_are_dropped_from_records_and_rejected_in_lists() {
        let r = format!(
            "{:?}",
            from_json(&json!({"a": null, "b": 1}), "x")
                .unwrap()
                .unwrap()
        );
        assert!(!r.contains("\"a\""), "{r}");
        let err = from_json(&json!([1, null]), "x").unwrap_err();
        assert_eq!(err.path, "x[1]");
        let deep = from_json(&json!({"a": {"b": [0, 1e40]}}), "arguments").unwrap_err();
        assert_eq!(deep.path, "arguments.a.b[1]");
    }
}
