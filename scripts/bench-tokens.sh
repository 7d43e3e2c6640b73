#!/usr/bin/env bash
# End-to-end token issuance benchmark on loopback: builds release, starts `warden serve` on a
# fresh data dir with a one-permit policy, registers a bench agent through the admin API and
# drives POST /oauth/token with `warden bench tokens` (1 and 4 clients), then stops.
# Usage: scripts/bench-tokens.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build --release --locked -p warden-cli
bin=target/release/warden
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
mkdir "$work/policies"
cat > "$work/policies/bench.cedar" <<'CEDAR'
@id("bench") permit (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"crm/search");
CEDAR
RUST_LOG=warn "$bin" serve --listen 127.0.0.1:18471 --data-dir "$work/data" --policies "$work/policies" >"$work/out" &
pid=$!
for _ in $(seq 100); do grep -q wdn_admin_ "$work/out" 2>/dev/null && break; sleep 0.1; done
export WARDEN_ADMIN_TOKEN=$(grep -o 'wdn_admin_[A-Za-z0-9_-]*' "$work/out")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
for c in 1 4; do
  "$bin" bench tokens --server http://127.0.0.1:18471 --connections "$c" --seconds "$secs"
done
