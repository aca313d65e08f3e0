#!/usr/bin/env bash
# Benchmark (c): an idle daemon whose next task is an hour away.
# Counts the daemon's wakeups (context switches of all its threads) over
# SECONDS (default 60) and reports its resident memory, next to its baseline
# in the same run: bench/idle_floor, a program that only links every library
# fleetkeeper uses and waits (what loading them all at start costs; the
# daemon loads the network libraries only when a task needs them).
#   bench/idle.sh BUILD_DIR [SECONDS]
set -euo pipefail
build=${1:-build-bench}
secs=${2:-60}
bin="$build/fleetkeeper"
work=$(mktemp -d)
floor_pid=
trap 'kill $pid $floor_pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT

cat > "$work/fk.conf" <<CONF
[daemon]
state_dir = $work/var
[task.hourly]
type = command
schedule = @every 1h
command = true
[task.nightly]
type = command
schedule = 30 2 * * *
command = true
CONF
"$bin" -c "$work/fk.conf" run > "$work/out.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
	grep -q scheduler_started "$work/out.log" 2>/dev/null && break
	sleep 0.05
done
sleep 2 # let the start-up writes settle: not part of the idle period
switches() {
	local total=0
	for t in /proc/$pid/task/*; do
		while read -r k v; do
			case $k in voluntary_ctxt_switches:|nonvoluntary_ctxt_switches:) total=$((total + v)) ;; esac
		done < "$t/status"
	done
	echo $total
}
before=$(switches)
sleep "$secs"
after=$(switches)
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
"$build/bench/idle_floor" &
floor_pid=$!
sleep 2 # loaded and waiting in pause()
floor_kb=$(awk '/VmRSS/ {print $2}' /proc/$floor_pid/status)
floor_anon_kb=$(awk '/RssAnon/ {print $2}' /proc/$floor_pid/status)
# private memory; the rest of VmRSS is shared-library pages, whose count
# follows the page cache (fault-around maps cached neighbours too)
anon_kb=$(awk '/RssAnon/ {print $2}' /proc/$pid/status)
threads=$(ls /proc/$pid/task | wc -l)
wakeups=$((after - before))
rate=$(awk -v w=$wakeups -v s=$secs 'BEGIN {printf "%.3f", w / s}')
rss_mib=$(awk -v k=$rss_kb 'BEGIN {printf "%.2f", k / 1024}')
anon_mib=$(awk -v k=$anon_kb 'BEGIN {printf "%.2f", k / 1024}')
floor_mib=$(awk -v k=$floor_kb 'BEGIN {printf "%.2f", k / 1024}')
floor_anon_mib=$(awk -v k=$floor_anon_kb 'BEGIN {printf "%.2f", k / 1024}')
echo "idle wakeups: $wakeups in ${secs}s ($rate per second, all $threads threads)"
echo "idle resident memory: $rss_mib MiB ($anon_mib MiB private)"
echo "baseline (all the libraries linked, no code): $floor_mib MiB ($floor_anon_mib MiB private)"
echo "{\"bench\": \"idle\", \"seconds\": $secs, \"wakeups\": $wakeups, \"wakeups_per_sec\": $rate, \"rss_mib\": $rss_mib, \"anon_mib\": $anon_mib, \"floor_rss_mib\": $floor_mib, \"floor_anon_mib\": $floor_anon_mib, \"threads\": $threads}"
