#!/usr/bin/env bash
# End-to-end MCP gateway benchmark on loopback: builds release, starts the demo tool server
# (warden-testkit, rmcp, JSON answers, requiring its own credential), starts `warden serve`
# in front of it with a policy that permits the call, and runs `warden bench mcp`: the same
# tools/call direct vs through Warden at 1, 16 and 64 clients. Also samples Warden's RSS
# idle and right after the load. When nginx is installed (`apt-get install nginx-light`), it
# is started too, as a plain keep-alive reverse proxy in front of the same upstream, and
# measured in the same run: the yardstick for what one extra hop costs on this machine.
# Usage: scripts/bench-mcp.sh [seconds] [--json] [more `warden bench mcp` options]
# With --json, stdout is one JSON document (the machine, the date, nginx's version, RSS and
# every point) and the progress lines go to stderr:
#   scripts/bench-mcp.sh 10 --json > docs/bench/mcp-e2e.json
# Environment: BENCH_CALL=4k measures `docs/read` of a 4 KiB document (the content-inspection
# path) instead of `crm/read_contact`; BENCH_INSPECTION=off turns content inspection off,
# to isolate its cost.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
shift || true
json=false
for a in "$@"; do [ "$a" = --json ] && json=true; done
# Progress lines: to stderr when stdout carries the JSON document.
say() { if $json; then echo "$@" >&2; else echo "$@"; fi; }
cargo build --release --locked -p warden-cli -p warden-testkit
bin=target/release/warden
work=$(mktemp -d)
npid=
trap 'kill $wpid $tpid $npid 2>/dev/null; rm -rf "$work"' EXIT
target/release/warden-testkit --listen 127.0.0.1:18481 --json --require-authorization "Bearer bench-upstream-secret" >"$work/testkit.out" &
tpid=$!
mkdir "$work/policies"
cat > "$work/policies/bench.cedar" <<'CEDAR'
@id("bench") permit (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"crm/read_contact");
@id("bench-docs") permit (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"docs/read");
CEDAR
inspection=true
[ "${BENCH_INSPECTION:-on}" = off ] && inspection=false
cat > "$work/warden.toml" <<TOML
[server]
listen = "127.0.0.1:18480"
data_dir = "$work/data"
[policy]
dir = "$work/policies"
[inspection]
enabled = $inspection
# The bench's own tool server is trusted on first use (the first call lists its tools).
[inspection.pinning]
mode = "tofu"
[upstreams.crm]
url = "http://127.0.0.1:18481/crm/mcp"
[upstreams.crm.credential]
header = "Authorization"
prefix = "Bearer "
secret = { env = "BENCH_UPSTREAM_SECRET" }
[upstreams.docs]
url = "http://127.0.0.1:18481/docs/mcp"
[upstreams.docs.credential]
header = "Authorization"
prefix = "Bearer "
secret = { env = "BENCH_UPSTREAM_SECRET" }
TOML
call=(--upstream crm --tool read_contact --arguments '{"id":"c-1"}')
path=crm
if [ "${BENCH_CALL:-}" = 4k ]; then
  call=(--upstream docs --tool read --arguments '{"path":"policy-4k.md"}')
  path=docs
fi
say "call: ${call[*]}; content inspection: $inspection"
BENCH_UPSTREAM_SECRET=bench-upstream-secret RUST_LOG=warn "$bin" serve --config "$work/warden.toml" >"$work/out" &
wpid=$!
for _ in $(seq 100); do grep -q wdn_admin_ "$work/out" 2>/dev/null && break; sleep 0.1; done
export WARDEN_ADMIN_TOKEN=$(grep -o 'wdn_admin_[A-Za-z0-9_-]*' "$work/out")
proxy=()
if nginx=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null); then
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  upstream tool { server 127.0.0.1:18481; keepalive 128; }
  server {
    listen 127.0.0.1:18482;
    location / {
      proxy_pass http://tool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_buffering off;
    }
  }
}
NGINX
  "$nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
  npid=$!
  proxy=(--proxy "http://127.0.0.1:18482/$path/mcp")
  nginx_version=$("$nginx" -v 2>&1 | cut -d/ -f2)
  say "nginx: $nginx_version, one worker per core, keep-alive upstream"
else
  say "nginx not installed: no plain-proxy yardstick (apt-get install nginx-light)"
fi
rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$wpid/status; }
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
say "machine: $machine; $(date -u +%F)"
rss_idle=$(rss)
say "warden RSS idle: $rss_idle"
points=$("$bin" bench mcp --server http://127.0.0.1:18480 --direct "http://127.0.0.1:18481/$path/mcp" "${call[@]}" \
  --direct-header "Authorization: Bearer bench-upstream-secret" --seconds "$secs" "${proxy[@]}" "$@")
$json || echo "$points"
# Who committed the audit records: calls on their own thread (leader) or the writer thread.
audit=$(curl -s http://127.0.0.1:18480/metrics | grep -E "^warden_audit_(records_written|commits|leader_commits)_total" || true)
say "$audit"
rss_after=$(rss)
rss_peak=$(awk '/VmHWM/ {print $2 " kB"}' /proc/$wpid/status)
say "warden RSS after load: $rss_after (peak $rss_peak)"
if $json; then
  POINTS="$points" AUDIT="$audit" python3 - "$machine" "${nginx_version:-}" "${call[*]}" "$inspection" "$secs" "$rss_idle" "$rss_after" "$rss_peak" <<'PY'
import json, os, sys, datetime
machine, nginx, call, inspection, secs, idle, after, peak = sys.argv[1:]
kib = lambda s: int(s.split()[0])
audit = dict(l.split() for l in os.environ["AUDIT"].splitlines() if l.strip())
print(json.dumps({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    "machine": machine, "nginx": nginx or None, "call": call,
    "content_inspection": inspection == "true", "seconds_per_point": int(secs),
    "warden_rss_kib": {"idle": kib(idle), "after": kib(after), "peak": kib(peak)},
    "audit": {k: int(v) for k, v in audit.items()},
    "points": json.loads(os.environ["POINTS"]),
}, indent=2))
PY
fi
