//! `[inspection]`: content inspection on the MCP path (IO-1..IO-4, EP-4; docs/INSPECTION.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[inspection]`: what Warden does with what it finds in tool arguments (before the
/// decision) and in tool results, resources and prompt results (before the agent sees
/// them). Findings always go to the audit trail (masked); these settings choose the
/// action. `[[inspection.rules]]` override them per tool and autonomy level.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectionConfig {
    /// `false` turns content inspection off (tool pinning stays on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Injection score (0..1) from which content counts as an injection.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 0.01, max = 1.0))]
    pub threshold: f32,
    /// What happens to content flowing to the agent. Defaults: `injection = "taint"`,
    /// `secrets = "mask"`, `pii = "allow"`.
    #[serde(default)]
    pub results: PartialActions,
    /// What happens to a call's arguments (decided before the call; arguments are never
    /// rewritten: `mask` and `redact` are not available here). Defaults:
    /// `injection = "annotate"`, `secrets = "block"`, `pii = "allow"`.
    #[serde(default)]
    pub arguments: PartialActions,
    /// Tools (`server/tool`, `*` matches any run of characters) whose calls need a
    /// human's approval while the agent's task is tainted. Default: every tool.
    #[serde(default = "every_tool")]
    pub high_risk: Vec<String>,
    /// Tools exempt from `high_risk` (e.g. reads that cannot leak or change anything).
    #[serde(default)]
    pub low_risk: Vec<String>,
    /// How long a taint lasts, in seconds (it also ends with the task's token).
    #[serde(default = "default_taint_secs")]
    #[schemars(range(min = 1, max = 604800))]
    pub taint_secs: u64,
    /// Results larger than this many bytes are oversize.
    #[serde(default = "default_max_result")]
    #[schemars(range(min = 1024))]
    pub max_result_bytes: usize,
    /// What happens to an oversize result: `block` (an error instead) or `truncate` (text
    /// content cut to fit, marked as cut).
    #[serde(default)]
    pub oversize: Oversize,
    /// What happens to a tool result that breaks the tool's declared `outputSchema` (or
    /// lacks the `structuredContent` it promises): `block` (an error instead), `alert`
    /// (passed, audited and logged) or `off` (not checked).
    #[serde(default)]
    pub output_schema: OutputSchemaAction,
    /// Per-tool and per-autonomy overrides; the first matching rule wins.
    #[serde(default)]
    pub rules: Vec<InspectionRule>,
    /// Tool pinning (EP-4).
    #[serde(default)]
    pub pinning: PinningConfig,
    /// A user-supplied ONNX prompt-injection classifier whose score joins the built-in
    /// rules' and model's (needs a Warden built with `--features onnx`).
    #[serde(default)]
    pub classifier: Option<ClassifierConfig>,
}

/// The actions for one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentActions {
    /// On a prompt-injection finding.
    pub injection: InjectionAction,
    /// On a secret (keys, tokens, private keys, connection strings).
    pub secrets: DlpAction,
    /// On personal data (cards, IBANs, national ids, e-mail addresses, phone numbers).
    pub pii: DlpAction,
}

impl ContentActions {
    pub fn results() -> Self {
        Self {
            injection: InjectionAction::Taint,
            secrets: DlpAction::Mask,
            pii: DlpAction::Allow,
        }
    }
    pub fn arguments() -> Self {
        Self {
            injection: InjectionAction::Annotate,
            secrets: DlpAction::Block,
            pii: DlpAction::Allow,
        }
    }
}

/// What to do with a prompt-injection finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InjectionAction {
    /// Let it through; the finding is recorded and attached to the result's `_meta`.
    Annotate,
    /// Replace the flagged passages with a marker.
    Redact,
    /// Answer an error instead.
    Block,
    /// Annotate, and mark the agent's task tainted: its high-risk calls need approval.
    Taint,
}

/// What to do with a data-leak finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DlpAction {
    /// Let it through (still recorded, masked, in the audit trail).
    Allow,
    /// Replace the value with a masked form (results only).
    Mask,
    /// Refuse: the call is not forwarded, or the result is not shown.
    Block,
    /// Let it through and raise an alert (audit event and warning log).
    Alert,
}

/// `[inspection.classifier]`: an ONNX sequence-classification model (e.g. a Hugging Face
/// export) with its `tokenizer.json`, run by the ONNX Runtime library given here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// The ONNX Runtime shared library (`libonnxruntime.so`, 1.22 or later).
    pub runtime: std::path::PathBuf,
    /// The model (`.onnx`): inputs among `input_ids`, `attention_mask`, `token_type_ids`;
    /// first output `[1, classes]` logits.
    pub model: std::path::PathBuf,
    /// The model's Hugging Face `tokenizer.json`.
    pub tokenizer: std::path::PathBuf,
    /// The index of the injection class.
    #[serde(default = "default_label")]
    pub label: usize,
    /// Tokens per window (the model's maximum sequence length).
    #[serde(default = "default_max_tokens")]
    #[schemars(range(min = 16, max = 8192))]
    pub max_tokens: usize,
}

fn default_label() -> usize {
    1
}

fn default_max_tokens() -> usize {
    512
}

/// What to do with a result that breaks its tool's declared output schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputSchemaAction {
    #[default]
    Block,
    Alert,
    Off,
}

/// What to do with an oversize result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    #[default]
    Block,
    Truncate,
}

/// `[[inspection.rules]]`: other actions for some tools and autonomy levels.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectionRule {
    /// Tools (`server/tool`, `*` wildcards) the rule applies to; empty: all.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Autonomy levels (`intern`, `junior`, `senior`, `principal`) it applies to; empty: all.
    #[serde(default)]
    pub autonomy: Vec<String>,
    #[serde(default)]
    pub results: Option<PartialActions>,
    #[serde(default)]
    pub arguments: Option<PartialActions>,
}

/// Actions a rule overrides (the others stay as configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartialActions {
    pub injection: Option<InjectionAction>,
    pub secrets: Option<DlpAction>,
    pub pii: Option<DlpAction>,
}

impl PartialActions {
    /// `base` with this rule's overrides applied.
    pub fn over(&self, base: ContentActions) -> ContentActions {
        ContentActions {
            injection: self.injection.unwrap_or(base.injection),
            secrets: self.secrets.unwrap_or(base.secrets),
            pii: self.pii.unwrap_or(base.pii),
        }
    }
}

/// `[inspection.pinning]`: each tool definition (name, description, schemas, annotations)
/// is pinned by the SHA-256 of its canonical JSON; a tool whose definition is not the
/// approved one is hidden from `tools/list` and its calls refused (EP-4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PinningConfig {
    /// `approve` (the default): a tool is usable once `warden tools approve` approved its
    /// definition. `tofu` (trust on first use): a tool never seen before is approved as
    /// first listed, unless its description trips a poisoning check; a changed one still
    /// waits for a person. `off`: no pinning.
    #[serde(default)]
    pub mode: PinMode,
    /// How old, in seconds, Warden's view of an upstream's tools may be when a call is
    /// decided; older, it lists the tools again first. Every `tools/list` an agent makes
    /// through Warden refreshes it too.
    #[serde(default = "default_refresh")]
    #[schemars(range(min = 1, max = 86400))]
    pub refresh_secs: u64,
}

/// How tool definitions are trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PinMode {
    #[default]
    Approve,
    Tofu,
    Off,
}

impl Default for PinningConfig {
    fn default() -> Self {
        Self {
            mode: PinMode::Approve,
            refresh_secs: default_refresh(),
        }
    }
}

fn default_refresh() -> u64 {
    300
}

impl InspectionConfig {
    /// Checks what the types cannot say; the message names the setting.
    pub fn problem(&self) -> Option<String> {
        let base = self.arguments.over(ContentActions::arguments());
        let args = std::iter::once(base).chain(
            self.rules
                .iter()
                .filter_map(|r| r.arguments.map(|a| a.over(base))),
        );
        for a in args {
            if a.secrets == DlpAction::Mask || a.pii == DlpAction::Mask {
                return Some(
                    "inspection.arguments: `mask` is for results; arguments are forwarded as \
                     decided (use block, alert or allow)"
                        .into(),
                );
            }
            if matches!(
                a.injection,
                InjectionAction::Redact | InjectionAction::Taint
            ) {
                return Some(
                    "inspection.arguments.injection: `annotate` or `block` (arguments are never \
                     rewritten, and taint follows content the agent received)"
                        .into(),
                );
            }
        }
        for r in &self.rules {
            if let Some(bad) = r
                .autonomy
                .iter()
                .find(|a| !["intern", "junior", "senior", "principal"].contains(&a.as_str()))
            {
                return Some(format!(
                    "inspection.rules: unknown autonomy level `{bad}` (intern, junior, senior, principal)"
                ));
            }
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Some("inspection.threshold: between 0 (exclusive) and 1".into());
        }
        if self.max_result_bytes < 1024 {
            return Some("inspection.max_result_bytes: at least 1024".into());
        }
        None
    }
}

fn yes() -> bool {
    true
}
fn default_threshold() -> f32 {
    0.5
}
fn every_tool() -> Vec<String> {
    vec!["*".into()]
}
fn default_taint_secs() -> u64 {
    3600
}
fn default_max_result() -> usize {
    4 << 20
}

impl Default for InspectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: default_threshold(),
            results: PartialActions::default(),
            arguments: PartialActions::default(),
            high_risk: every_tool(),
            low_risk: Vec::new(),
            taint_secs: default_taint_secs(),
            max_result_bytes: default_max_result(),
            oversize: Oversize::Block,
            output_schema: OutputSchemaAction::Block,
            classifier: None,
            rules: Vec::new(),
            pinning: PinningConfig::default(),
        }
    }
}
