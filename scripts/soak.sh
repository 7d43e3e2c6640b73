#!/usr/bin/env bash
# Soak (issue 9): `warden serve` (release build) under steady loopback load from 4 clients
# for SECONDS (default 600): task tokens, sessions opened and ended in both protocol eras,
# allowed and refused calls, listings, malformed frames and unauthenticated requests. Its
# resident memory, open descriptors and threads are sampled once a second; the run fails
# if either memory or descriptors keep growing after the first third (the warm-up).
# Samples: target/tmp/soak.csv (CARGO_TARGET_TMPDIR); the summary table: soak.md beside it.
# Usage: scripts/soak.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
WARDEN_SOAK_SECS=${1:-600} cargo test --release --locked -p warden-cli --test soak -- --nocapture
