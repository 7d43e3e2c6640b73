//! Fuzz targets for the frames agents send (both protocol eras share this decoder; the
//! 2026-07-28 header checks are fuzzed in `warden-gateway`). `cargo test` replays the seed
//! corpus in `src/__fuzz__/` and runs random inputs for a second; `scripts/fuzz.sh` runs
//! them coverage-guided. docs/SECURITY-TESTS.md.

use super::*;

/// Any bytes: a precise error or a frame, never a panic; and what Warden decided about is
/// what any other JSON parser reads from the same bytes (no parser differential: the
/// upstream must act on the very message that was authorised).
#[test]
fn frame() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(frame) = Frame::parse(bytes, 64 * 1024) else {
            return;
        };
        assert_eq!(frame.bytes, bytes, "the frame keeps the exact bytes");
        let lenient: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!("strict parse accepted what serde_json refuses: {e}");
        });
        let Ok(again) = decode(lenient) else {
            panic!("the lenient value does not decode");
        };
        assert_eq!(&again, frame.message(), "parser differential");
    });
}

/// Strict JSON agrees with serde_json on every document without duplicate keys, and
/// refuses exactly those with one.
#[test]
fn strict_json() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let lenient = serde_json::from_slice::<Value>(bytes);
        match strict::parse(bytes) {
            Ok(v) => assert_eq!(lenient.ok(), Some(v), "strict and lenient disagree"),
            Err(e) => {
                if let Ok(v) = lenient {
                    assert!(
                        e.to_string().contains("duplicate"),
                        "strict refused a document serde_json reads ({e}): {v}"
                    );
                }
            }
        }
    });
}
