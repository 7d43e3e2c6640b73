//! Warden's Cedar schema: the embedded base fragment plus the policy set's own fragments.

use cedar_policy::{Schema, SchemaFragment};

use crate::error::{LoadError, first_offset};
use crate::source::SourceFile;

/// Warden's base schema, in the Cedar schema format.
pub const BASE_SCHEMA: &str = include_str!("warden.cedarschema");

/// The name under which the base schema appears in errors.
pub const BASE_SCHEMA_NAME: &str = "<warden base schema>";

/// The default `Warden::Arguments`, used when no fragment of the policy set defines it.
const DEFAULT_ARGUMENTS: &str = "namespace Warden { type Arguments = {}; }";

/// The full schema text a policy set is validated against, for `warden policy schema`.
pub fn full_schema_text(user: &[SourceFile]) -> String {
    let mut text = String::from(BASE_SCHEMA);
    if !user.iter().any(defines_arguments_text) {
        text.push_str("\n// No fragment of this policy set defines Warden::Arguments:\n");
        text.push_str(DEFAULT_ARGUMENTS);
        text.push('\n');
    }
    for f in user {
        text.push_str(&format!("\n// ---- {} ----\n{}\n", f.name, f.text));
    }
    text
}

fn defines_arguments_text(f: &SourceFile) -> bool {
    SchemaFragment::from_cedarschema_str(&f.text)
        .ok()
        .and_then(|(frag, _)| frag.to_json_value().ok())
        .is_some_and(|json| defines_arguments(&json))
}

fn defines_arguments(json: &serde_json::Value) -> bool {
    json.get("Warden")
        .and_then(|ns| ns.get("commonTypes"))
        .and_then(|ct| ct.get("Arguments"))
        .is_some()
}

/// Builds the schema from the base fragment and the user's fragments, reporting every
/// fragment that does not parse, with its location.
pub(crate) fn build(user: &[SourceFile]) -> Result<Schema, Vec<LoadError>> {
    let mut errors = Vec::new();
    let mut fragments = Vec::with_capacity(user.len() + 2);
    match parse_fragment(BASE_SCHEMA_NAME, BASE_SCHEMA) {
        Ok(f) => fragments.push(f),
        Err(e) => errors.push(e),
    }
    let mut arguments_defined = false;
    for f in user {
        match parse_fragment(&f.name, &f.text) {
            Ok(frag) => {
                arguments_defined |= frag
                    .clone()
                    .to_json_value()
                    .is_ok_and(|j| defines_arguments(&j));
                fragments.push(frag);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !arguments_defined {
        match parse_fragment(BASE_SCHEMA_NAME, DEFAULT_ARGUMENTS) {
            Ok(f) => fragments.push(f),
            Err(e) => return Err(vec![e]),
        }
    }
    Schema::from_schema_fragments(fragments).map_err(|e| {
        let names: Vec<&str> = user.iter().map(|f| f.name.as_str()).collect();
        let file = if names.is_empty() {
            BASE_SCHEMA_NAME.to_owned()
        } else {
            names.join(", ")
        };
        let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
        vec![LoadError::whole_file(&file, format!("schema does not combine: {e}")).with_help(help)]
    })
}

fn parse_fragment(name: &str, text: &str) -> Result<SchemaFragment, LoadError> {
    match SchemaFragment::from_cedarschema_str(text) {
        Ok((frag, _warnings)) => Ok(frag),
        Err(e) => {
            let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
            Err(LoadError::at(name, text, first_offset(&e), e.to_string()).with_help(help))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_schema_builds_alone() {
        let schema = build(&[]).unwrap();
        assert_eq!(schema.actions().count(), 4);
    }

    #[test]
    fn user_fragment_can_define_arguments() {
        let f = SourceFile::new(
            "args.cedarschema",
            "namespace Warden { type Arguments = { amount?: Long }; }",
        );
        assert!(build(&[f]).is_ok());
    }

    #[test]
    fn bad_fragment_names_file_and_line() {
        let f = SourceFile::new("bad.cedarschema", "namespace X {\n  entity ;\n}");
        let errs = build(&[f]).unwrap_err();
        assert_eq!(errs[0].file, "bad.cedarschema");
        assert_eq!(errs[0].line, 2);
    }
}
