#!/usr/bin/env bash
# End-to-end AuthZEN benchmark on loopback: builds release, starts `warden serve` with the
# Todo interop example, drives it with `warden bench authzen` (1 and 4 connections), stops it.
# Usage: scripts/bench-authzen.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build --release --locked -p warden-cli
bin=target/release/warden
data=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$data"' EXIT
RUST_LOG=warn "$bin" serve --config examples/authzen-todo/warden.toml --listen 127.0.0.1:18470 --data-dir "$data" >/dev/null &
pid=$!
for _ in $(seq 50); do curl -fs 127.0.0.1:18470/healthz >/dev/null 2>&1 && break; sleep 0.1; done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
for c in 1 4; do
  "$bin" bench authzen --addr 127.0.0.1:18470 --connections "$c" --seconds "$secs" \
    --requests ../shared/vectors/authzen/todo/decisions.json
done
