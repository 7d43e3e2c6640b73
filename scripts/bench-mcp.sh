#!/usr/bin/env bash
# End-to-end MCP gateway benchmark on loopback: builds release, starts the demo tool server
# (warden-testkit, rmcp, JSON answers, requiring its own credential), starts `warden serve`
# in front of it with a policy that permits the call, and runs `warden bench mcp`: the same
# tools/call direct vs through Warden at 1, 16 and 64 clients. Also samples Warden's RSS
# idle and right after the load.
# Usage: scripts/bench-mcp.sh [seconds] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
shift || true
cargo build --release --locked -p warden-cli -p warden-testkit
bin=target/release/warden
work=$(mktemp -d)
trap 'kill $wpid $tpid 2>/dev/null; rm -rf "$work"' EXIT
target/release/warden-testkit --listen 127.0.0.1:18481 --json --require-authorization "Bearer bench-upstream-secret" >"$work/testkit.out" &
tpid=$!
mkdir "$work/policies"
cat > "$work/policies/bench.cedar" <<'CEDAR'
@id("bench") permit (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"crm/read_contact");
CEDAR
cat > "$work/warden.toml" <<TOML
[server]
listen = "127.0.0.1:18480"
data_dir = "$work/data"
[policy]
dir = "$work/policies"
[upstreams.crm]
url = "http://127.0.0.1:18481/crm/mcp"
[upstreams.crm.credential]
header = "Authorization"
prefix = "Bearer "
secret = { env = "BENCH_UPSTREAM_SECRET" }
TOML
BENCH_UPSTREAM_SECRET=bench-upstream-secret RUST_LOG=warn "$bin" serve --config "$work/warden.toml" >"$work/out" &
wpid=$!
for _ in $(seq 100); do grep -q wdn_admin_ "$work/out" 2>/dev/null && break; sleep 0.1; done
export WARDEN_ADMIN_TOKEN=$(grep -o 'wdn_admin_[A-Za-z0-9_-]*' "$work/out")
rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$wpid/status; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
echo "warden RSS idle: $(rss)"
"$bin" bench mcp --server http://127.0.0.1:18480 --direct http://127.0.0.1:18481/crm/mcp \
  --direct-header "Authorization: Bearer bench-upstream-secret" --seconds "$secs" "$@"
echo "warden RSS after load: $(rss) (peak $(awk '/VmHWM/ {print $2 " kB"}' /proc/$wpid/status))"
