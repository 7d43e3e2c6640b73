#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that sees untrusted bytes (libFuzzer through
# cargo-bolero, on the stable toolchain: no sanitizer, which would need nightly).
# Usage: scripts/fuzz.sh [seconds per target] [target name filter]
#   scripts/fuzz.sh 60            # every target, one minute each
#   scripts/fuzz.sh 600 sse       # ten minutes of the SSE target
# Each target starts from its seed corpus in the repo (`__fuzz__/<target>/corpus`, which
# `cargo test` replays) copied to target/fuzz-corpus/, so what the fuzzer learns does not
# land in the repo. A crashing input is written to the target's `__fuzz__/.../crashes/`
# in the repo: `cargo test` replays those too, so a crasher is a regression test from the
# moment it is found (commit it with the fix). docs/SECURITY-TESTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
filter=${2:-}
tools=target/tools
if ! command -v cargo-bolero >/dev/null 2>&1; then
  if [ ! -x "$tools/bin/cargo-bolero" ]; then
    echo "installing cargo-bolero 0.13.5 into $tools (once)"
    cargo install --locked --quiet cargo-bolero --version 0.13.5 --no-default-features --root "$tools"
  fi
  export PATH="$PWD/$tools/bin:$PATH"
fi
# package  test name (as cargo test names it)  directory holding its __fuzz__
targets=(
  "warden-mcp fuzz::frame crates/warden-mcp/src/__fuzz__/fuzz__frame"
  "warden-mcp fuzz::strict_json crates/warden-mcp/src/__fuzz__/fuzz__strict_json"
  "warden-gateway fuzz::sse crates/warden-gateway/src/__fuzz__/fuzz__sse"
  "warden-gateway fuzz::token_form crates/warden-gateway/src/__fuzz__/fuzz__token_form"
  "warden-gateway fuzz::mcp_headers crates/warden-gateway/src/__fuzz__/fuzz__mcp_headers"
  "warden-identity fuzz::task_token crates/warden-identity/src/__fuzz__/fuzz__task_token"
  "warden-identity fuzz::dpop_proof crates/warden-identity/src/__fuzz__/fuzz__dpop_proof"
  "warden-policy fuzz::policy_file crates/warden-policy/src/__fuzz__/fuzz__policy_file"
  "warden-policy fuzz::authzen_request crates/warden-policy/src/__fuzz__/fuzz__authzen_request"
  "warden-config fuzz::config_file crates/warden-config/src/__fuzz__/fuzz__config_file"
  "warden-inspect fuzz::content crates/warden-inspect/src/__fuzz__/fuzz__content"
)
printf '%-28s %10s %12s %8s %8s\n' target seconds runs runs/s crashes
failed=0
for t in "${targets[@]}"; do
  read -r pkg name dir <<<"$t"
  [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
  corpus="target/fuzz-corpus/${dir//\//_}"
  mkdir -p "$corpus" "$dir/crashes"
  cp -n "$dir/corpus/"* "$corpus/" 2>/dev/null || true
  before=$(find "$dir/crashes" -type f | wc -l)
  log="target/fuzz-corpus/$(basename "$dir").log"
  start=$(date +%s)
  rc=0
  cargo bolero test -p "$pkg" "$name" --sanitizer NONE -T "${secs}s" \
    --corpus-dir "$corpus" --crashes-dir "$dir/crashes" >"$log" 2>&1 || rc=$?
  runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1 || true)
  after=$(find "$dir/crashes" -type f | wc -l)
  took=$(( $(date +%s) - start ))
  printf '%-28s %10s %12s %8s %8s\n' "$pkg/$name" "$secs" "${runs:-?}" \
    "$(( ${runs:-0} / (secs > 0 ? secs : 1) ))" "$(( after - before ))"
  if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
    failed=1
    echo "  FAILED (exit $rc): see $log; new crashers in $dir/crashes" >&2
    tail -20 "$log" >&2
  fi
done
exit "$failed"
