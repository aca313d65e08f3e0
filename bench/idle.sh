#!/usr/bin/env bash
# Benchmark (c): an idle daemon whose next task is an hour away.
# Counts the daemon's wakeups (context switches of all its threads) over
# SECONDS (default 60; --quick: 10) and reports its memory next to its
# baseline in the same run: bench/idle_floor, a program that only links every
# library fleetkeeper links (SQLite, cJSON, inih, libmicrohttpd, libssh2,
# libgit2, libcurl, libcrypto) and waits — what loading them costs before
# any fleetkeeper code runs.
#
# Memory is judged on proportional and private memory, from
# /proc/PID/smaps_rollup: Pss (each shared page divided among the processes
# that map it) and Private_Dirty (what this process alone costs the system).
# VmRSS is printed too, but shared-library pages follow the page cache
# (fault-around maps cached neighbours), so it moves between runs. PSS also
# depends on what else maps the same libraries: the two programs are measured
# one after the other, never side by side.
#   bench/idle.sh [--quick] [BUILD_DIR] [SECONDS]
set -euo pipefail
secs=60
if [ "${1:-}" = "--quick" ]; then
	secs=10
	shift
fi
build=${1:-build-bench}
secs=${2:-$secs}
bin="$build/fleetkeeper"
work=$(mktemp -d)
pid=
floor_pid=
trap 'kill $pid $floor_pid 2>/dev/null || true; wait $pid $floor_pid 2>/dev/null || true; rm -rf "$work"' EXIT

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
grep -q scheduler_started "$work/out.log" || { cat "$work/out.log" >&2; exit 1; }
sleep 2 # let the start-up writes settle: not part of the idle period

switches() {
	local total=0
	for t in /proc/$1/task/*; do
		while read -r k v; do
			case $k in voluntary_ctxt_switches:|nonvoluntary_ctxt_switches:) total=$((total + v)) ;; esac
		done < "$t/status"
	done
	echo $total
}

mib() {
	awk -v k="$1" 'BEGIN {printf "%.2f", k / 1024}'
}

# VmRSS, Pss, Private_Dirty and Anonymous of process $2, as MiB in mem[$1.*]
declare -A mem
measure() {
	local who=$1 p=$2 k
	mem[$who.rss]=$(mib "$(awk '/^VmRSS:/ {print $2}' /proc/$p/status)")
	for k in Pss Private_Dirty Anonymous; do
		mem[$who.$k]=$(mib "$(awk -v k="$k:" '$1 == k {print $2; exit}' /proc/$p/smaps_rollup)")
	done
}

# PSS divides each shared page among the processes that map it: how many
# others map libcrypto tells what the PSS figures below were divided by.
sharers() {
	local n=0 q
	for q in /proc/[0-9]*; do
		[ "$q" = "/proc/$1" ] && continue
		grep -qs 'libcrypto\.so' "$q/maps" && n=$((n + 1))
	done
	echo $n
}

before=$(switches $pid)
sleep "$secs"
after=$(switches $pid)
threads=$(ls /proc/$pid/task | wc -l)
measure daemon $pid
others=$(sharers $pid)
# One after the other: running together, the two would share their library
# pages and each PSS would drop by half of those.
kill $pid
wait $pid 2>/dev/null || true
pid=
"$build/bench/idle_floor" &
floor_pid=$!
sleep 2 # loaded and waiting in pause()
measure floor $floor_pid

wakeups=$((after - before))
rate=$(awk -v w=$wakeups -v s="$secs" 'BEGIN {printf "%.3f", w / s}')
echo "idle wakeups: $wakeups in ${secs}s ($rate per second, all $threads threads)"
row() {
	printf '%-28s %10s %10s %15s %10s\n' "$1" "$2" "$3" "$4" "$5"
}
row "" "VmRSS MiB" "PSS MiB" "Private_Dirty" "Anon MiB"
for who in daemon floor; do
	name="idle daemon"
	[ $who = floor ] && name="idle_floor (libraries only)"
	row "$name" "${mem[$who.rss]}" "${mem[$who.Pss]}" "${mem[$who.Private_Dirty]}" \
		"${mem[$who.Anonymous]}"
done
echo "other processes mapping libcrypto while the daemon was measured: $others" \
	"(PSS is lower the more there are)"
echo "goal: PSS <= 5 MiB, Private_Dirty <= 2.5 MiB, 0 wakeups"
echo "{\"bench\": \"idle\", \"seconds\": $secs, \"wakeups\": $wakeups," \
	"\"wakeups_per_sec\": $rate, \"threads\": $threads," \
	"\"rss_mib\": ${mem[daemon.rss]}, \"pss_mib\": ${mem[daemon.Pss]}," \
	"\"private_dirty_mib\": ${mem[daemon.Private_Dirty]}, \"anon_mib\": ${mem[daemon.Anonymous]}," \
	"\"floor_rss_mib\": ${mem[floor.rss]}, \"floor_pss_mib\": ${mem[floor.Pss]}," \
	"\"floor_private_dirty_mib\": ${mem[floor.Private_Dirty]}," \
	"\"floor_anon_mib\": ${mem[floor.Anonymous]}, \"libcrypto_sharers\": $others}"
