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
# record [-k] COMMAND...: run a benchmark, print what it says and keep its
# JSON lines; -k: its own goals missed (exit 1) do not stop the others
record() {
	local keep=0
	if [ "$1" = -k ]; then keep=1; shift; fi
	"$@" > "$tmp" || [ "$keep" = 1 ]
	cat "$tmp"
	grep '^{' "$tmp" >> "$out" || true
}
for b in log log_scalar wheel next spawn; do
	echo "== bench_$b"
	record build-bench/bench/bench_$b "$PWD"
done
echo "== idle daemon"
record bench/idle.sh build-bench "$idle_secs"
echo "== health_check over 200 loopback servers against sequential ssh"
record bench/health.sh "$PWD/build-bench/fleetkeeper"
echo "== github_sync of 5,000 repositories from the replay server, cold and warm"
record bench/github_sync.sh "$PWD/build-bench/fleetkeeper"
echo "== health_check at fleet scale: 1,000 servers (20% silent), ansible, 10,000 handles"
record -k bench/health_scale.sh "$PWD/build-bench/fleetkeeper"
echo "== store: 30 days of 10,000 servers, prune under a writer, queries and scrape"
record bench/store_growth.sh "$PWD/build-bench"
echo "== dispatch: 1,000 tasks due in one second, against 10, and with spread = 30s"
record bench/dispatch.sh "$PWD/build-bench/fleetkeeper"
echo "== HTTP API: 200 concurrent clients for 30 s on /api/v1/status and SSE streams"
record /usr/bin/python3 bench/api_load.py "$PWD/build-bench/fleetkeeper" 30 200
echo "== cluster on PostgreSQL: failover (10 kill -9, 15 s and 3 s), dispatch cost and events/s against SQLite"
record /usr/bin/python3 bench/failover.py "$PWD/build-bench/fleetkeeper"
echo "results: $out"
