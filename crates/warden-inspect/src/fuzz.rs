//! Fuzz target for content inspection: any text (tool results, arguments, tool
//! descriptions carry attacker-chosen bytes) gets a report whose offsets point into the
//! original text on character boundaries, whose DLP matches are in order and apart, whose
//! masked form hides every matched value, and whose score is a probability. `cargo test`
//! replays `src/__fuzz__/` and runs random inputs for a second; `scripts/fuzz.sh` runs it
//! coverage-guided. docs/SECURITY-TESTS.md.

use crate::{Inspector, Kind};

#[test]
fn content() {
    let inspector = std::panic::AssertUnwindSafe(Inspector::new().unwrap());
    bolero::check!().for_each(|input: &[u8]| {
        let Some((&k, text)) = input.split_first() else {
            return;
        };
        let text = String::from_utf8_lossy(text);
        let kind = match k % 3 {
            0 => Kind::ToolResult,
            1 => Kind::Argument,
            _ => Kind::ToolDescription,
        };
        let r = inspector.inspect(&text, kind);
        assert!((0.0..=1.0).contains(&r.score), "score {}", r.score);
        for f in &r.findings {
            assert!(f.start <= f.end && f.end <= text.len(), "{f:?}");
            assert!(
                text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
                "{f:?}"
            );
        }
        let mut at = 0;
        for m in &r.dlp {
            assert!(
                at <= m.start && m.start < m.end && m.end <= text.len(),
                "{m:?}"
            );
            assert!(
                text.is_char_boundary(m.start) && text.is_char_boundary(m.end),
                "{m:?}"
            );
            assert_ne!(m.masked, text[m.span()], "a match left unmasked");
            at = m.end;
        }
        let masked = r.masked(&text);
        if r.dlp.is_empty() {
            assert_eq!(masked, text);
        }
    });
}
