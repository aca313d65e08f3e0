#!/usr/bin/env bash
# Runs every benchmark against its baseline in the same run, in a release
# build (build-bench/), and writes the JSON lines to bench/results/latest.jsonl.
#   bench/run.sh [--quick]    --quick: a 10 s idle measurement instead of 60 s
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh test
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release
meson compile -C build-bench
idle_secs=60
[ "${1:-}" = "--quick" ] && idle_secs=10
mkdir -p bench/results
out=bench/results/latest.jsonl
: > "$out"
export FK_SOURCE_ROOT="$PWD"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for b in log log_scalar wheel next spawn; do
	echo "== bench_$b"
	build-bench/bench/bench_$b "$PWD" > "$tmp"
	cat "$tmp"
	grep '^{' "$tmp" >> "$out" || true
done
echo "== idle daemon"
bench/idle.sh build-bench "$idle_secs" > "$tmp"
cat "$tmp"
grep '^{' "$tmp" >> "$out" || true
echo "== health_check over 200 loopback servers against sequential ssh"
bench/health.sh "$PWD/build-bench/fleetkeeper" > "$tmp"
cat "$tmp"
grep '^{' "$tmp" >> "$out" || true
echo "== github_sync of 5,000 repositories from the replay server, cold and warm"
bench/github_sync.sh "$PWD/build-bench/fleetkeeper" > "$tmp"
cat "$tmp"
grep '^{' "$tmp" >> "$out" || true
echo "== health_check at fleet scale: 1,000 servers (20% silent), ansible, 10,000 handles"
bench/health_scale.sh "$PWD/build-bench/fleetkeeper" > "$tmp" || true
cat "$tmp"
grep '^{' "$tmp" >> "$out" || true
echo "== store: 30 days of 10,000 servers, prune under a writer, queries and scrape"
bench/store_growth.sh "$PWD/build-bench" > "$tmp"
cat "$tmp"
grep '^{' "$tmp" >> "$out" || true
echo "== dispatch: 1,000 tasks due in one second, against 10, and with spread = 30s"
bench/dispatch.sh "$PWD/build-bench/fleetkeeper" > "$tmp"
cat "$tmp"
grep '^{' "$tmp" >> "$out" || true
echo "== HTTP API: 200 concurrent clients for 30 s on /api/v1/status and SSE streams"
/usr/bin/python3 bench/api_load.py "$PWD/build-bench/fleetkeeper" 30 200 > "$tmp"
cat "$tmp"
grep '^{' "$tmp" >> "$out" || true
echo "results: $out"
