//! The output validation gate (IO-3): a tool that declares an `outputSchema` promises
//! structured results that conform to it (MCP 2025-06-18 and later: "servers MUST provide
//! structured results that conform to this schema"). Warden holds it to that promise before
//! the agent reads the result: a result without `structuredContent`, or with one that does
//! not validate, is refused (`output_schema_violation`) or alerted, per
//! `inspection.output_schema`.
//!
//! Schemas are compiled once per tool definition, when Warden sees the definition listed
//! (never on the call path). Only local references (`#/$defs/...`) resolve: nothing is
//! fetched over the network or from files, so a schema pointing elsewhere does not compile,
//! and a tool whose declared schema does not compile has every result refused — an answer
//! that cannot be checked is not passed as checked. What a refusal says names the place in
//! the result and the schema keyword broken, never the value.

use std::fmt;

use serde_json::{Map, Value};

/// A tool's declared output schema, compiled.
pub struct Output {
    /// The hash of the definition it was compiled from.
    pub hash: String,
    check: Check,
}

enum Check {
    /// The tool declares no output schema.
    Undeclared,
    Declared(Box<jsonschema::Validator>),
    /// The declared schema is not a usable JSON Schema: why.
    Invalid(String),
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let check = match &self.check {
            Check::Undeclared => "undeclared",
            Check::Declared(_) => "declared",
            Check::Invalid(_) => "invalid",
        };
        f.debug_struct("Output")
            .field("hash", &self.hash)
            .field("check", &check)
            .finish()
    }
}

impl Output {
    /// Compiles the output schema of the tool definition `def` (hash `hash`).
    pub fn compile(def: &Value, hash: &str) -> Self {
        let check = match def.get("outputSchema") {
            None | Some(Value::Null) => Check::Undeclared,
            Some(schema @ Value::Object(_)) => match jsonschema::validator_for(schema) {
                Ok(v) => Check::Declared(Box::new(v)),
                Err(e) => Check::Invalid(format!("its outputSchema does not compile: {e}")),
            },
            Some(_) => Check::Invalid("its outputSchema is not a JSON object".into()),
        };
        Self {
            hash: hash.to_owned(),
            check,
        }
    }

    /// Checks one tool result (the `result` member of the answer): `Err(why)` when it
    /// breaks the tool's declared schema. Error results (`isError: true`) carry no
    /// structured content and are not checked.
    pub fn check(&self, result: &Map<String, Value>) -> Result<(), String> {
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let validator = match &self.check {
            Check::Undeclared => return Ok(()),
            Check::Invalid(why) => {
                return Err(format!("the tool's result cannot be checked: {why}"));
            }
            Check::Declared(v) => v,
        };
        let Some(structured) = result.get("structuredContent") else {
            return Err(
                "the tool declares an output schema but its result has no structuredContent".into(),
            );
        };
        // The message names where and which keyword, never the value: it reaches the
        // agent and the audit trail, and the value may be what the other gates mask.
        validator.validate(structured).map_err(|e| {
            let pointer = |l: &jsonschema::paths::Location| {
                let p = l.to_string();
                if p.is_empty() { "/".to_owned() } else { p }
            };
            format!(
                "structuredContent at {} breaks the tool's output schema (at {})",
                pointer(e.instance_path()),
                pointer(e.schema_path()),
            )
        })
    }
}

/// Checks a tool result against the tool's compiled output schema; `None`: Warden has not
/// seen the tool listed (the upstream could not be listed, or does not list it), and a
/// result that is not an error cannot pass as checked. The call itself is not refused
/// before forwarding: an upstream that is down is then reported as down (and counts for
/// its breaker), and an unknown tool gets the upstream's own error, which passes.
pub fn check(output: Option<&Output>, result: &Map<String, Value>) -> Result<(), String> {
    match output {
        Some(o) => o.check(result),
        None if result.get("isError").and_then(Value::as_bool) == Some(true) => Ok(()),
        None => Err(
            "Warden has not seen the tool in the upstream's tools/list, so the result \
             cannot be checked against an output schema"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn tool(schema: Value) -> Output {
        Output::compile(&json!({"name": "t", "outputSchema": schema}), "h")
    }

    #[test]
    fn conforming_results_pass_and_others_are_refused_with_the_path() {
        let out = tool(json!({
            "type": "object",
            "properties": {"balance": {"type": "number"}, "owner": {"type": "string"}},
            "required": ["balance"],
        }));
        assert_eq!(
            out.check(&result(
                json!({"content": [], "structuredContent": {"balance": 3}})
            )),
            Ok(())
        );
        let why = out
            .check(&result(
                json!({"structuredContent": {"balance": "lots", "owner": "x"}}),
            ))
            .unwrap_err();
        assert!(why.contains("/balance"), "{why}");
        let why = out.check(&result(json!({"content": []}))).unwrap_err();
        assert!(why.contains("no structuredContent"), "{why}");
        assert!(
            out.check(&result(json!({"structuredContent": {}})))
                .is_err()
        );
    }

    #[test]
    fn errors_and_tools_without_a_schema_are_not_checked() {
        let out = tool(json!({"type": "object", "required": ["x"]}));
        assert_eq!(
            out.check(&result(json!({"isError": true, "content": []}))),
            Ok(())
        );
        let none = Output::compile(&json!({"name": "t"}), "h");
        assert_eq!(none.check(&result(json!({"content": []}))), Ok(()));
        assert_eq!(
            none.check(&result(json!({"structuredContent": "anything"}))),
            Ok(())
        );
    }

    #[test]
    fn a_schema_that_cannot_be_compiled_refuses_every_result() {
        // Remote references are never fetched.
        let remote = tool(json!({"$ref": "https://schemas.example/out.json"}));
        assert!(
            remote
                .check(&result(json!({"structuredContent": {}})))
                .is_err()
        );
        let broken = tool(json!({"type": "no-such-type"}));
        assert!(
            broken
                .check(&result(json!({"structuredContent": {}})))
                .is_err()
        );
        let not_object = Output::compile(&json!({"name": "t", "outputSchema": "x"}), "h");
        assert!(
            not_object
                .check(&result(json!({"structuredContent": {}})))
                .is_err()
        );
    }

    #[test]
    fn a_result_of_a_tool_never_listed_cannot_pass_as_checked() {
        assert!(check(None, &result(json!({"content": []}))).is_err());
        assert_eq!(
            check(None, &result(json!({"isError": true, "content": []}))),
            Ok(())
        );
    }

    #[test]
    fn local_references_resolve() {
        let out = tool(json!({
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}}},
            "$defs": {"item": {"type": "object", "required": ["id"]}},
        }));
        assert_eq!(
            out.check(&result(
                json!({"structuredContent": {"items": [{"id": 1}]}})
            )),
            Ok(())
        );
        let why = out
            .check(&result(
                json!({"structuredContent": {"items": [{"id": 1}, {}]}}),
            ))
            .unwrap_err();
        assert!(why.contains("/items/1"), "{why}");
    }
}
