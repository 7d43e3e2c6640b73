//! Turns policy files into validated policies with Warden ids and metadata.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Effect as CedarEffect, Entities, Policy, PolicyId as CedarPolicyId, PolicySet, Schema,
    ValidationMode, Validator,
};
use serde_json::Value;
use warden_core::PolicyId;

use crate::error::{LoadError, chain, first_offset, line_col};
use crate::source::SourceFile;

/// The annotations Warden understands. Any other annotation is a load error, so that a typo
/// such as `@aproval` can never silently drop an approval requirement.
pub const KNOWN_ANNOTATIONS: [&str; 6] = ["id", "reason", "approval", "approvers", "notify", "doc"];

/// What Warden knows about one policy beyond Cedar's view of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMeta {
    pub id: PolicyId,
    pub file: String,
    pub line: usize,
    pub effect: CedarEffect,
    /// `@reason("...")`: why the policy exists, shown when it determines a decision.
    pub reason: Option<String>,
    /// `@approval("...")` on a permit: a human must approve; the text says why.
    pub approval: Option<String>,
    /// `@approvers("a, b")`: who may approve. Default: the agent's sponsor.
    pub approvers: Vec<String>,
    /// `@notify("a, b")`: who to tell after an allowed action.
    pub notify: Vec<String>,
    /// The policy's source text.
    pub text: String,
}

/// Parsed, renamed and annotated policies, not yet validated.
pub(crate) struct ParsedPolicies {
    pub set: PolicySet,
    pub meta: HashMap<CedarPolicyId, Arc<PolicyMeta>>,
}

pub(crate) fn parse_policies(files: &[SourceFile]) -> Result<ParsedPolicies, Vec<LoadError>> {
    let mut errors = Vec::new();
    let mut set = PolicySet::new();
    let mut meta: HashMap<CedarPolicyId, Arc<PolicyMeta>> = HashMap::new();
    for file in files {
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(p) => p,
            Err(errs) => {
                for e in errs.iter() {
                    let help = miette::Diagnostic::help(e).map(|h| h.to_string());
                    errors.push(
                        LoadError::at(&file.name, &file.text, first_offset(e), e.to_string())
                            .with_help(help),
                    );
                }
                continue;
            }
        };
        for template in parsed.templates() {
            let offset = file.text.find(&template.to_string());
            errors.push(
                LoadError::at(
                    &file.name,
                    &file.text,
                    offset,
                    "policy templates (`?principal`, `?resource`) are not supported".into(),
                )
                .with_help(Some(
                    "write a static policy for each principal or resource".into(),
                )),
            );
        }
        let mut policies: Vec<&Policy> = parsed.policies().collect();
        // Cedar names them policy0, policy1, ... in source order.
        policies.sort_by_key(|p| {
            AsRef::<str>::as_ref(p.id())
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let mut cursor = 0;
        for p in policies {
            let text = p.to_string();
            let offset = file
                .text
                .get(cursor..)
                .and_then(|rest| rest.find(&text))
                .map(|o| o + cursor);
            if let Some(o) = offset {
                cursor = o + text.len();
            }
            let (line, _) = offset.map_or((0, 0), |o| line_col(&file.text, o));
            match policy_meta(file, p, line, text, offset) {
                Ok(m) => {
                    let cedar_id = CedarPolicyId::new(m.id.as_str());
                    if let Some(prev) = meta.get(&cedar_id) {
                        errors.push(LoadError {
                            file: file.name.clone(),
                            line,
                            column: 1,
                            message: format!(
                                "duplicate policy id `{}` (first defined at {}:{})",
                                m.id, prev.file, prev.line
                            ),
                            help: Some("give each policy a unique @id(\"...\")".into()),
                        });
                        continue;
                    }
                    if let Err(e) = set.add(p.new_id(cedar_id.clone())) {
                        errors.push(LoadError::at(&file.name, &file.text, offset, e.to_string()));
                        continue;
                    }
                    meta.insert(cedar_id, Arc::new(m));
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(ParsedPolicies { set, meta })
    } else {
        Err(errors)
    }
}

fn policy_meta(
    file: &SourceFile,
    p: &Policy,
    line: usize,
    text: String,
    offset: Option<usize>,
) -> Result<PolicyMeta, LoadError> {
    let err = |msg: String, help: &str| {
        LoadError::at(&file.name, &file.text, offset, msg).with_help(Some(help.to_owned()))
    };
    for (key, _) in p.annotations() {
        if !KNOWN_ANNOTATIONS.contains(&key) {
            return Err(err(
                format!("unknown annotation `@{key}`"),
                &format!("Warden understands @{}", KNOWN_ANNOTATIONS.join(", @")),
            ));
        }
    }
    let id = match p.annotation("id") {
        Some(id) if id.trim().is_empty() => {
            return Err(err("`@id` must not be empty".into(), "write @id(\"name\")"));
        }
        Some(id) => id.to_owned(),
        None => format!("{}:{line}", file.name),
    };
    let effect = p.effect();
    let approval = p.annotation("approval").map(str::to_owned);
    if approval.is_some() && effect == CedarEffect::Forbid {
        return Err(err(
            "`@approval` is only meaningful on a `permit` policy".into(),
            "a forbid always denies; to ask a human, write a permit with @approval(\"why\")",
        ));
    }
    let approvers = list(p.annotation("approvers"));
    if !approvers.is_empty() && approval.is_none() {
        return Err(err(
            "`@approvers` without `@approval`".into(),
            "add @approval(\"why approval is needed\") to the same policy",
        ));
    }
    Ok(PolicyMeta {
        id: PolicyId::new(id),
        file: file.name.clone(),
        line,
        effect,
        reason: p.annotation("reason").map(str::to_owned),
        approval,
        approvers,
        notify: list(p.annotation("notify")),
        text,
    })
}

fn list(annotation: Option<&str>) -> Vec<String> {
    annotation
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Strict validation of every policy against the schema; errors point into policy files.
pub(crate) fn validate(
    parsed: &ParsedPolicies,
    schema: &Schema,
    files: &[SourceFile],
) -> (Vec<LoadError>, Vec<LoadError>) {
    let result = Validator::new(schema.clone()).validate(&parsed.set, ValidationMode::Strict);
    let locate = |policy: &CedarPolicyId, d: &dyn miette::Diagnostic, msg: String| {
        let Some(m) = parsed.meta.get(policy) else {
            return LoadError::whole_file("<policies>", msg);
        };
        let text = files
            .iter()
            .find(|f| f.name == m.file)
            .map_or("", |f| f.text.as_str());
        let mut e = LoadError::at(
            &m.file,
            text,
            first_offset(d),
            format!("policy `{}`: {msg}", m.id),
        );
        if e.line == 0 {
            e.line = m.line;
        }
        e.with_help(d.help().map(|h| h.to_string()))
    };
    let errors = result
        .validation_errors()
        .map(|e| locate(e.policy_id(), e, e.to_string()))
        .collect();
    let warnings = result
        .validation_warnings()
        .map(|w| locate(w.policy_id(), w, w.to_string()))
        .collect();
    (errors, warnings)
}

/// Entity types whose id is `server/name`: each gets its ToolServer as a parent.
const SERVER_CHILD_TYPES: [&str; 3] = ["Warden::Tool", "Warden::McpResource", "Warden::Prompt"];

/// Parses entity files, adds each tool's server as its parent, and validates everything
/// against the schema. The action entities of the schema are included.
pub(crate) fn entities(files: &[SourceFile], schema: &Schema) -> Result<Entities, Vec<LoadError>> {
    let mut errors = Vec::new();
    let mut all = Vec::new();
    for file in files {
        let mut value: Value = match serde_json::from_str(&file.text) {
            Ok(v) => v,
            Err(e) => {
                errors.push(LoadError {
                    file: file.name.clone(),
                    line: e.line(),
                    column: e.column(),
                    message: format!("not valid JSON: {e}"),
                    help: None,
                });
                continue;
            }
        };
        let Some(items) = value.as_array_mut() else {
            errors.push(LoadError::whole_file(
                &file.name,
                "an entities file must be a JSON array of entities",
            ));
            continue;
        };
        items.iter_mut().for_each(add_server_parent);
        // Validate file by file so that an error names the file it is in.
        if let Err(e) = Entities::from_json_value(Value::Array(items.clone()), Some(schema)) {
            let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
            errors.push(LoadError::whole_file(&file.name, chain(&e)).with_help(help));
            continue;
        }
        all.append(items);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Entities::from_json_value(Value::Array(all), Some(schema)).map_err(|e| {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        vec![LoadError::whole_file(&names.join(", "), chain(&e))]
    })
}

fn add_server_parent(entity: &mut Value) {
    let Some(uid) = entity.get("uid") else { return };
    let (Some(ty), Some(id)) = (
        uid.get("type").and_then(Value::as_str),
        uid.get("id").and_then(Value::as_str),
    ) else {
        return;
    };
    if !SERVER_CHILD_TYPES.contains(&ty) {
        return;
    }
    let Some((server, _)) = id.split_once('/') else {
        return;
    };
    let parent = serde_json::json!({"type": "Warden::ToolServer", "id": server});
    let Some(obj) = entity.as_object_mut() else {
        return;
    };
    let parents = obj
        .entry("parents")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = parents.as_array_mut()
        && !list.contains(&parent)
    {
        list.push(parent);
    }
}
