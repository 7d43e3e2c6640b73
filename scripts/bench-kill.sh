#!/usr/bin/env bash
# Kill switch benchmark (KS-1, KS-2) on loopback: builds release, starts the demo tool server
# (SSE answers, so sessions have an event stream), starts `warden serve` in front of it with a
# policy that lets a drill agent read contacts, registers the agent, and runs
# `warden kill --drill` for N rounds: each round opens a live session and event stream, calls
# back to back, kills the agent (forced) through the admin API, and times command -> first
# denied call and command -> stream closed, then resumes the agent.
# Usage: scripts/bench-kill.sh [rounds] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-100}
shift || true
cargo build --release --locked -p warden-cli -p warden-testkit
bin=$PWD/target/release/warden
work=$(mktemp -d)
trap 'kill $wpid $tpid 2>/dev/null; rm -rf "$work"' EXIT
target/release/warden-testkit --listen 127.0.0.1:18491 ${TESTKIT_ARGS:-} >"$work/testkit.out" &
tpid=$!
mkdir "$work/policies"
cat > "$work/policies/drill.cedar" <<'CEDAR'
@id("drill") permit (principal == Warden::Agent::"drill-agent", action == Warden::Action::"call_tool", resource == Warden::Tool::"crm/read_contact");
CEDAR
cat > "$work/warden.toml" <<TOML
[server]
listen = "127.0.0.1:18490"
data_dir = "$work/data"
[policy]
dir = "$work/policies"
[upstreams.crm]
url = "http://127.0.0.1:18491/crm/mcp"
TOML
RUST_LOG=error "$bin" serve --config "$work/warden.toml" >"$work/out" &
wpid=$!
for _ in $(seq 100); do grep -q wdn_admin_ "$work/out" 2>/dev/null && break; sleep 0.1; done
export WARDEN_ADMIN_TOKEN=$(grep -o 'wdn_admin_[A-Za-z0-9_-]*' "$work/out")
export WARDEN_SERVER=http://127.0.0.1:18490
"$bin" agent create drill-agent --sponsor bench@example.com --key-out "$work/drill.jwk" >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
"$bin" kill --drill drill-agent --agent-key "$work/drill.jwk" --call crm/read_contact \
  --args '{"id":"c-1"}' --rounds "$rounds" "$@"
