//! What inspection found in one text, and what to do with it: the injection score, the
//! findings, the DLP matches, and the text with the matches masked.

use std::borrow::Cow;
use std::ops::Range;

use serde::Serialize;

use crate::{Category, DataClass, Kind, dlp};

/// One injection or poisoning finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What kind of attack the text looks like.
    pub category: Category,
    /// The rule (or `model`) that found it.
    pub rule: &'static str,
    /// How sure: 0–1.
    pub score: f32,
    /// Byte offset of the finding in the original text.
    pub start: usize,
    /// Byte offset just past the finding.
    pub end: usize,
    /// Found inside a base64 run (the offsets are the run's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub encoded: bool,
}

impl Finding {
    pub(crate) fn new(
        category: Category,
        rule: &'static str,
        score: f32,
        span: Range<usize>,
    ) -> Self {
        Self {
            category,
            rule,
            score,
            start: span.start,
            end: span.end,
            encoded: false,
        }
    }

    /// The finding's range in the original text.
    pub fn span(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// One DLP match: where, what kind, and its masked form (never the value itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DlpMatch {
    /// The rule that matched.
    pub rule: &'static str,
    /// Secret or personal data.
    pub class: DataClass,
    /// Byte offset of the sensitive value in the original text.
    pub start: usize,
    /// Byte offset just past it.
    pub end: usize,
    /// The value masked; filled in by [`Report::finish`].
    pub masked: String,
    #[serde(skip)]
    keep: (usize, usize),
}

impl DlpMatch {
    pub(crate) fn new(
        rule: &'static str,
        class: DataClass,
        span: Range<usize>,
        keep: (usize, usize),
    ) -> Self {
        Self {
            rule,
            class,
            start: span.start,
            end: span.end,
            masked: String::new(),
            keep,
        }
    }

    /// The value's range in the original text.
    pub fn span(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// The inspection of one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What the text was.
    pub kind: Kind,
    /// The injection score: the noisy-OR of the strongest finding of each rule.
    pub score: f32,
    /// Whether the score reaches the inspector's threshold.
    pub injection: bool,
    /// Injection and poisoning findings, strongest first.
    pub findings: Vec<Finding>,
    /// Secrets and personal data, in text order, not overlapping.
    pub dlp: Vec<DlpMatch>,
    #[serde(skip)]
    threshold: f32,
}

impl Report {
    pub(crate) fn new(kind: Kind, threshold: f32) -> Self {
        Self {
            kind,
            score: 0.0,
            injection: false,
            findings: Vec::new(),
            dlp: Vec::new(),
            threshold,
        }
    }

    /// Orders and de-duplicates, masks the DLP values from `original`, computes the score.
    pub(crate) fn finish(&mut self, original: &str) {
        // One finding per rule and place; then the strongest first.
        self.findings
            .sort_by(|a, b| (a.rule, a.start, a.end).cmp(&(b.rule, b.start, b.end)));
        self.findings
            .dedup_by(|a, b| a.rule == b.rule && a.start == b.start && a.end == b.end);
        let mut per_rule: Vec<(&'static str, f32)> = Vec::new();
        for f in &self.findings {
            match per_rule.iter_mut().find(|(r, _)| *r == f.rule) {
                Some((_, s)) => *s = s.max(f.score),
                None => per_rule.push((f.rule, f.score)),
            }
        }
        let clean = per_rule
            .iter()
            .fold(1.0f32, |acc, (_, s)| acc * (1.0 - s.clamp(0.0, 1.0)));
        self.score = 1.0 - clean;
        self.injection = self.score >= self.threshold;
        self.findings
            .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.start.cmp(&b.start)));

        // Where matches overlap, a secret beats personal data (a token before `@github.com`
        // is a token, not an email address), then the longer match wins.
        self.dlp.sort_by(|a, b| {
            let rank = |m: &DlpMatch| {
                (
                    m.class != DataClass::Secret,
                    usize::MAX - m.end.saturating_sub(m.start),
                    m.start,
                )
            };
            rank(a).cmp(&rank(b))
        });
        let mut kept: Vec<DlpMatch> = Vec::with_capacity(self.dlp.len());
        for m in self.dlp.drain(..) {
            if !kept.iter().any(|k| m.start < k.end && k.start < m.end) {
                kept.push(m);
            }
        }
        kept.sort_by_key(|m| m.start);
        for m in &mut kept {
            // Spans are character boundaries by construction; if one ever were not, the
            // span grows to whole characters rather than leave the value unmasked.
            m.start = original.floor_char_boundary(m.start);
            m.end = original.ceil_char_boundary(m.end).max(m.start);
            m.masked = dlp::mask(original.get(m.span()).unwrap_or_default(), m.keep, m.class);
        }
        self.dlp = kept;
    }

    /// `original` with every DLP match for which `select` says yes replaced by its masked form.
    pub fn mask_where<'t>(
        &self,
        original: &'t str,
        select: impl Fn(&DlpMatch) -> bool,
    ) -> Cow<'t, str> {
        let mut chosen = self.dlp.iter().filter(|m| select(m)).peekable();
        if chosen.peek().is_none() {
            return Cow::Borrowed(original);
        }
        let mut out = String::with_capacity(original.len());
        let mut at = 0;
        // Matches are in text order, apart and on character boundaries (`finish`).
        for m in chosen {
            out.push_str(original.get(at..m.start).unwrap_or_default());
            out.push_str(&m.masked);
            at = at.max(m.end);
        }
        out.push_str(original.get(at..).unwrap_or_default());
        Cow::Owned(out)
    }

    /// `original` with every DLP match masked.
    pub fn masked<'t>(&self, original: &'t str) -> Cow<'t, str> {
        self.mask_where(original, |_| true)
    }
}
