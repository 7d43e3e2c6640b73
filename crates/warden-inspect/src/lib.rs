//! Warden's content inspection (IO-1, IO-2, IO-4): what flows through the gateway in either
//! direction is scanned for instructions addressed to the model (prompt injection), for
//! secrets and personal data (data-leak prevention) and, in tool descriptions, for tool
//! poisoning. Synchronous, no I/O, no allocation for clean plain-ASCII input beyond the report.
//!
//! The pipeline for one text:
//! 1. [`normalize`] decodes the carrier (escapes, entities, percent-encoding, invisible and
//!    tag characters, look-alike letters, compatibility forms, base64 runs) and keeps a map
//!    back to the original offsets.
//! 2. One Aho-Corasick pass over the normalised text finds the cue words of every rule, and
//!    one byte pass finds runs of digits; only the rules whose cue occurred run their pattern.
//! 3. DLP matches must pass their rule's check (Luhn, mod-97, entropy …).
//! 4. The statistical [`Model`] scores the most suspicious window of words.
//! 5. The injection score is the noisy-OR of the strongest finding of each rule.
//!
//! Detection is advisory (SPEC IO-1): the findings go to policy, which decides.

mod dlp;
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod fuzz;
mod injection;
mod model;
pub mod normalize;
#[cfg(feature = "onnx")]
pub mod onnx;
mod report;

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

pub use dlp::rules as dlp_rules;
pub use model::{Model, ModelError};
pub use normalize::Normalised;
pub use report::{DlpMatch, Finding, Report};

/// Score from which content counts as an injection by default.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Matches reported per rule and stretch of text: enough to show the pattern, bounded work.
const MAX_MATCHES_PER_RULE: usize = 16;
/// Bytes around a run of digits in which the numeric rules look (an IBAN's country code and
/// letters sit before its first long digit group).
const DIGIT_WINDOW_MARGIN: usize = 40;

/// What a text is, which decides the rules that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Content flowing to the agent: a tool result, a resource, a prompt, another agent's
    /// message.
    ToolResult,
    /// An argument the agent sends.
    Argument,
    /// An upstream tool's description (tool-poisoning checks apply).
    ToolDescription,
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tool_result" => Ok(Self::ToolResult),
            "argument" => Ok(Self::Argument),
            "tool_description" => Ok(Self::ToolDescription),
            other => Err(format!(
                "unknown kind `{other}`: expected tool_result, argument or tool_description"
            )),
        }
    }
}

/// The kind of an injection or poisoning finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// "Ignore previous instructions", "new instructions:", text addressed to the AI.
    InstructionOverride,
    /// Chat-template and role markers: `<|im_start|>`, `[INST]`, `### System`.
    RoleMarker,
    /// "You are now…", developer mode, pretend to be.
    Persona,
    /// Asks for the system prompt or instructions.
    PromptLeak,
    /// Tells the model to hide what it does from the user.
    Concealment,
    /// Data sent out: Markdown images with data in the URL, "send the contacts to…".
    Exfiltration,
    /// Steers the agent to call a tool.
    ToolSteering,
    /// Invisible text: tag characters, zero-width or bidi controls, HTML comments aimed at
    /// the model, look-alike letters.
    HiddenText,
    /// The statistical model's judgement.
    Statistical,
    /// A tool description that tells the model how to use *other* tools.
    CrossToolReference,
    /// A tool description that asks for secrets or credential files.
    SecretReference,
    /// A tool description that tells the model to act without confirmation.
    SkipConfirmation,
}

impl Category {
    /// The name used in reports and policy context (`instruction_override`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstructionOverride => "instruction_override",
            Self::RoleMarker => "role_marker",
            Self::Persona => "persona",
            Self::PromptLeak => "prompt_leak",
            Self::Concealment => "concealment",
            Self::Exfiltration => "exfiltration",
            Self::ToolSteering => "tool_steering",
            Self::HiddenText => "hidden_text",
            Self::Statistical => "statistical",
            Self::CrossToolReference => "cross_tool_reference",
            Self::SecretReference => "secret_reference",
            Self::SkipConfirmation => "skip_confirmation",
        }
    }
}

/// The kind of a DLP match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Credentials, keys, tokens.
    Secret,
    /// Personal data.
    Pii,
}

impl DataClass {
    /// `secret` or `pii`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Pii => "pii",
        }
    }
}

/// What a cue word switches on: a rule, by its slot (injection rules first, then DLP rules).
#[derive(Debug, Clone, Copy)]
struct Target {
    slot: usize,
    reach: (usize, usize),
}

/// A second statistical opinion on a text (the optional ONNX backend): the probability that
/// it is a prompt injection. An error is reported as a finding that flags the text: content
/// the configured classifier could not look at is not passed as clean.
pub trait Classifier: Send + Sync + std::fmt::Debug {
    /// The injection probability of `text` (0..1).
    fn score(&self, text: &str) -> Result<f32, String>;
}

/// The compiled rule set and model. Build once, share (`Send + Sync`), call
/// [`Inspector::inspect`] from any thread.
#[derive(Debug)]
pub struct Inspector {
    cues: AhoCorasick,
    /// Per cue: the rules it switches on.
    targets: Vec<Vec<Target>>,
    /// Per cue: whether it must start a word (it starts with a letter or digit), so that
    /// `use` does not fire inside `museum`.
    word_start: Vec<bool>,
    injection: Vec<Regex>,
    dlp: Vec<Regex>,
    model: Model,
    threshold: f32,
    classifier: Option<std::sync::Arc<dyn Classifier>>,
}

/// Why the inspector could not be built (a rule or the model is broken: a bug, not input).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A rule's pattern does not compile.
    #[error("rule {rule}: {source}")]
    Pattern {
        /// The rule.
        rule: &'static str,
        /// The regex error.
        source: regex::Error,
    },
    /// The cue automaton could not be built.
    #[error("cue automaton: {0}")]
    Cues(#[from] aho_corasick::BuildError),
    /// The model file is broken.
    #[error(transparent)]
    Model(#[from] ModelError),
}

fn compile(rule: &'static str, pattern: &str, case_insensitive: bool) -> Result<Regex, BuildError> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 23)
        .build()
        .map_err(|source| BuildError::Pattern { rule, source })
}

impl Inspector {
    /// The built-in rules and the embedded model.
    pub fn new() -> Result<Self, BuildError> {
        Self::with_model(Model::embedded()?)
    }

    /// The built-in rules with another model.
    pub fn with_model(model: Model) -> Result<Self, BuildError> {
        let mut words: Vec<&'static str> = Vec::new();
        let mut targets: Vec<Vec<Target>> = Vec::new();
        let mut add = |cue: &'static str, t: Target| {
            let lower = cue.to_ascii_lowercase();
            match words.iter().position(|w| w.eq_ignore_ascii_case(&lower)) {
                Some(i) => {
                    if let Some(list) = targets.get_mut(i) {
                        list.push(t);
                    }
                }
                None => {
                    words.push(cue);
                    targets.push(vec![t]);
                }
            }
        };
        for (i, r) in injection::RULES.iter().enumerate() {
            for c in r.cues {
                add(
                    c,
                    Target {
                        slot: i,
                        reach: r.reach,
                    },
                );
            }
        }
        for (i, r) in dlp::RULES.iter().enumerate() {
            if let dlp::Trigger::Cues(cues) = r.trigger {
                for c in cues {
                    add(
                        c,
                        Target {
                            slot: injection::RULES.len() + i,
                            reach: r.reach,
                        },
                    );
                }
            }
        }
        let word_start = words
            .iter()
            .map(|w| w.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()))
            .collect();
        let cues = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&words)?;
        let injection = injection::RULES
            .iter()
            .map(|r| compile(r.id, r.pattern, true))
            .collect::<Result<_, _>>()?;
        let dlp = dlp::RULES
            .iter()
            .map(|r| compile(r.id, r.pattern, false))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            cues,
            targets,
            word_start,
            injection,
            dlp,
            model,
            threshold: DEFAULT_THRESHOLD,
            classifier: None,
        })
    }

    /// Sets the score from which a report counts as an injection.
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold.clamp(0.0, 1.0);
        self
    }

    /// Adds a classifier whose score joins the rules' and the model's (rule `classifier`;
    /// `classifier_failed` when it could not score a text).
    pub fn with_classifier(mut self, c: std::sync::Arc<dyn Classifier>) -> Self {
        self.classifier = Some(c);
        self
    }

    /// Inspects one text.
    pub fn inspect(&self, text: &str, kind: Kind) -> Report {
        let n = Normalised::new(text);
        let mut report = Report::new(kind, self.threshold);
        self.scan(n.text(), kind, &mut report, &|r| n.original(r), true);
        for d in &n.decoded {
            let span = d.span.clone();
            let before = report.findings.len();
            self.scan(&d.text, kind, &mut report, &|_| span.clone(), false);
            for f in report.findings.get_mut(before..).unwrap_or_default() {
                f.encoded = true;
            }
        }
        signals(&n.signals, kind, &mut report);
        report.finish(text);
        report
    }

    fn scan(
        &self,
        text: &str,
        kind: Kind,
        report: &mut Report,
        original: &dyn Fn(Range<usize>) -> Range<usize>,
        with_dlp: bool,
    ) {
        let bytes = text.as_bytes();
        // Each cue occurrence opens a stretch of text around it for each rule it switches
        // on; a rule's pattern runs only on its (merged) stretches.
        let mut stretches: Vec<(usize, usize, usize)> = Vec::new();
        for m in self.cues.find_overlapping_iter(bytes) {
            let cue = m.pattern().as_usize();
            let inside_word = m.start() > 0
                && self.word_start.get(cue).copied().unwrap_or(false)
                && bytes
                    .get(m.start() - 1)
                    .is_some_and(u8::is_ascii_alphanumeric);
            if inside_word {
                continue;
            }
            for t in self.targets.get(cue).map_or(&[][..], Vec::as_slice) {
                let from = m.start().saturating_sub(t.reach.0);
                let to = m.end().saturating_add(t.reach.1).min(bytes.len());
                stretches.push((t.slot, from, to));
            }
        }
        stretches.sort_unstable();
        let mut merged: Vec<(usize, Range<usize>)> = Vec::with_capacity(stretches.len());
        for (slot, from, to) in stretches {
            match merged.last_mut() {
                Some((s, r)) if *s == slot && from <= r.end => r.end = r.end.max(to),
                _ => merged.push((slot, from..to)),
            }
        }
        let injection_rules = injection::RULES.len();
        for (slot, range) in &merged {
            let Some(slice) = bytes.get(range.clone()) else {
                continue;
            };
            if let (Some(rule), Some(re)) = (injection::RULES.get(*slot), self.injection.get(*slot))
            {
                if !rule.applies_to(kind) {
                    continue;
                }
                for m in re.find_iter(slice).take(MAX_MATCHES_PER_RULE) {
                    let at = range.start + m.start()..range.start + m.end();
                    report.findings.push(Finding::new(
                        rule.category,
                        rule.id,
                        rule.score,
                        original(at),
                    ));
                }
            } else if with_dlp {
                let i = slot.saturating_sub(injection_rules);
                if let (Some(rule), Some(re)) = (dlp::RULES.get(i), self.dlp.get(i)) {
                    self.dlp_matches(rule, re, slice, range.start, report, original);
                }
            }
        }
        let (score, window) = self.model.score(text);
        if score >= self.threshold * 0.6 {
            report.findings.push(Finding::new(
                Category::Statistical,
                "model",
                score,
                original(window),
            ));
        }
        if let Some(c) = &self.classifier {
            let (rule, score) = match c.score(text) {
                Ok(s) => ("classifier", s),
                Err(_) => ("classifier_failed", 1.0),
            };
            if score >= self.threshold * 0.6 {
                report.findings.push(Finding::new(
                    Category::Statistical,
                    rule,
                    score,
                    original(0..text.len()),
                ));
            }
        }
        if !with_dlp {
            return;
        }
        let windows = digit_windows(bytes);
        for (rule, re) in dlp::RULES.iter().zip(&self.dlp) {
            if let dlp::Trigger::Digits(k) = rule.trigger {
                for w in windows.iter().filter(|w| w.digits >= k) {
                    if let Some(slice) = bytes.get(w.range.clone()) {
                        self.dlp_matches(rule, re, slice, w.range.start, report, original);
                    }
                }
            }
        }
    }

    fn dlp_matches(
        &self,
        rule: &dlp::Rule,
        re: &Regex,
        bytes: &[u8],
        offset: usize,
        report: &mut Report,
        original: &dyn Fn(Range<usize>) -> Range<usize>,
    ) {
        for caps in re.captures_iter(bytes).take(MAX_MATCHES_PER_RULE) {
            let value = if rule.group == 0 {
                caps.get(0)
            } else {
                (rule.group..caps.len()).find_map(|g| caps.get(g))
            };
            let Some(value) = value else { continue };
            if !(rule.check)(value.as_bytes()) {
                continue;
            }
            let span = original(offset + value.start()..offset + value.end());
            report
                .dlp
                .push(DlpMatch::new(rule.id, rule.class, span, rule.keep));
        }
    }
}

/// Concealment traces the normaliser undid, as findings.
fn signals(s: &normalize::Signals, kind: Kind, report: &mut Report) {
    let Some(span) = s.span.clone() else { return };
    let description = kind == Kind::ToolDescription;
    if s.tag_chars > 0 {
        report.findings.push(Finding::new(
            Category::HiddenText,
            "tag_characters",
            0.9,
            span.clone(),
        ));
    }
    if s.invisible + s.bidi > 0 {
        // Zero-width characters turn up in pasted web text; in a tool description there is
        // no reason for them.
        let score = if description {
            0.9
        } else if s.invisible + s.bidi >= 3 {
            0.45
        } else {
            0.3
        };
        report.findings.push(Finding::new(
            Category::HiddenText,
            "invisible_characters",
            score,
            span.clone(),
        ));
    }
    if s.homoglyphs > 0 {
        let score = if s.homoglyphs >= 2 || description {
            0.6
        } else {
            0.3
        };
        report.findings.push(Finding::new(
            Category::HiddenText,
            "homoglyphs",
            score,
            span,
        ));
    }
}

/// A stretch of the text around a run of digits, for the numeric DLP rules.
#[derive(Debug)]
struct DigitWindow {
    range: Range<usize>,
    /// The most digits in one run inside it.
    digits: usize,
}

/// Runs of digits (with the separators numbers are written with), widened by a margin and
/// merged where they overlap. Runs of fewer than 6 digits (years, amounts) are skipped.
fn digit_windows(bytes: &[u8]) -> Vec<DigitWindow> {
    let mut out: Vec<DigitWindow> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some(start) = bytes
            .get(i..)
            .and_then(|r| r.iter().position(u8::is_ascii_digit))
        else {
            break;
        };
        let start = i + start;
        let mut end = start;
        let mut digits = 0;
        while let Some(&b) = bytes.get(end) {
            if b.is_ascii_digit() {
                digits += 1;
            } else if !matches!(b, b' ' | b'-' | b'.' | b'(' | b')' | b'/') {
                break;
            }
            end += 1;
        }
        i = end.max(start + 1);
        if digits < 6 {
            continue;
        }
        let range =
            start.saturating_sub(DIGIT_WINDOW_MARGIN)..(end + DIGIT_WINDOW_MARGIN).min(bytes.len());
        match out.last_mut() {
            Some(last) if last.range.end >= range.start => {
                last.range.end = range.end;
                last.digits = last.digits.max(digits);
            }
            _ => out.push(DigitWindow { range, digits }),
        }
    }
    out
}

#[cfg(test)]
mod tests;
