//! Fuzz target for `warden.toml`: any text is a config or an error that names the file, a
//! line inside it and a reason (never a panic, never a silent default). `cargo test`
//! replays `src/__fuzz__/` and runs random inputs for a second; `scripts/fuzz.sh` runs it
//! coverage-guided. docs/SECURITY-TESTS.md.

use std::path::Path;

use crate::Config;

#[test]
fn config_file() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        match Config::parse("fuzz.toml", text, Path::new("/etc/warden")) {
            Ok(config) => {
                let _ = config.exposure_problem();
            }
            Err(e) => {
                assert_eq!(e.file, "fuzz.toml");
                assert!(!e.message.is_empty(), "an error without a reason");
                assert!(
                    e.line <= text.lines().count() + 1,
                    "line {} of a {}-line file: {e}",
                    e.line,
                    text.lines().count()
                );
            }
        }
    });
}
