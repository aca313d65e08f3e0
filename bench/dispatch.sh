#!/usr/bin/env bash
# Benchmark: top-of-the-minute dispatch (issue 16, item 4).
#   bench/dispatch.sh [FLEETKEEPER_BIN]   (a release build)
#
# 1,000 `command` tasks (`/bin/true`, schedule `* * * * *`) are due in the
# same second. The daemon's wall clock is put 3 s before a minute boundary
# with libfaketime (a fixed offset in $FAKETIME, no file read per clock
# call; the monotonic clock stays real), so one minute start fires within
# seconds. The figures come from the `<task>_start` events in the store:
# dispatch_latency_sec (fire time -> task_runs row committed) and
# start_latency_sec (fire time -> a worker starts the run), max_concurrent_tasks
# = 16. Baselines in the same run: 10 tasks due in the same second (the
# floor: one small burst), and the same 1,000 tasks with `spread = 30s`
# (their fires spread over the window: the largest number of fires in one
# second, and the row latency then). Determinism: a second daemon on the
# spread configuration reports (status) the same offset for every task as
# the fires of the first.
set -euo pipefail
bin=${1:-build-bench/fleetkeeper}
bin=$(readlink -f "$bin")
faketime=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
[ -e "$faketime" ] || { echo "dispatch: libfaketime missing (scripts/setup-deps.sh test)" >&2; exit 1; }
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

# config DIR N SPREAD
config() {
	mkdir -p "$1"
	{
		printf '[daemon]\nstate_dir = %s/var\ncontrol_socket = %s/var/fk.sock\n' "$1" "$1"
		printf 'max_concurrent_tasks = 16\nspread = %s\n[log]\nlevel = info\n' "$3"
		for i in $(seq -w 0 $(($2 - 1))); do
			printf '[task.t%s]\ntype = command\nschedule = * * * * *\ncommand = /bin/true\n' "$i"
		done
	} > "$1/fk.conf"
}

# start DIR LEAD: the daemon, its wall clock LEAD s before a minute boundary
start() {
	local off
	off=$(python3 -c "
import math, time
t = time.time(); b = math.floor(t / 60) * 60 + 60
while b - $2 < t + 0.5: b += 60
print('%+.3fs' % (b - $2 - t))")
	env LD_PRELOAD="$faketime" FAKETIME="$off" FAKETIME_DONT_FAKE_MONOTONIC=1 \
		"$bin" -c "$1/fk.conf" run > "$1/out.log" 2>&1 &
	pid=$!
}

stop() {
	kill "$pid"
	wait "$pid" || true
	pid=
}

# wait_starts DIR N DEADLINE: N start events with a fire time in the store
wait_starts() {
	python3 - "$@" <<'PY'
import sqlite3, sys, time
db, n, deadline = sys.argv[1] + "/var/state.db", int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + deadline
while time.monotonic() < end:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        c = con.execute("SELECT count(*) FROM events WHERE event LIKE 't%\\_start' ESCAPE '\\'"
                        " AND line LIKE '%dispatch_latency_sec%'").fetchone()[0]
        con.close()
        if c >= n:
            sys.exit(0)
    except sqlite3.OperationalError:
        pass
    time.sleep(0.2)
sys.exit("dispatch: timed out waiting for %d start events in %s" % (n, db))
PY
}

run_case() { # DIR N SPREAD LEAD DEADLINE
	config "$1" "$2" "$3"
	start "$1" "$4"
	wait_starts "$1" "$2" "$5"
	stop
}

echo "dispatch: 10 tasks due in one second (baseline)" >&2
run_case "$work/ten" 10 0 3 30
echo "dispatch: 1,000 tasks due in one second" >&2
run_case "$work/thousand" 1000 0 3 120
echo "dispatch: 1,000 tasks, spread = 30s" >&2
run_case "$work/spread" 1000 30s 3 150
# the second daemon on the spread configuration: its announced next runs
config "$work/spread2" 1000 30s
start "$work/spread2" 20
for _ in $(seq 1 200); do
	# the daemon's own answer, not the CLI's offline fallback
	"$bin" -c "$work/spread2/fk.conf" status --json > "$work/status.json" 2>/dev/null &&
		grep -q '"pid"' "$work/status.json" && break
	sleep 0.1
done
stop

python3 - "$work" <<'PY'
import json, sqlite3, sys
from collections import Counter
from datetime import datetime

work = sys.argv[1]

def unix(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()

def starts(case):
    con = sqlite3.connect(f"{work}/{case}/var/state.db")
    rows = [json.loads(l) for (l,) in con.execute(
        "SELECT line FROM events WHERE event LIKE 't%\\_start' ESCAPE '\\' ORDER BY id")]
    runs = con.execute("SELECT id, task FROM task_runs ORDER BY id").fetchall()
    con.close()
    return [r for r in rows if "dispatch_latency_sec" in r], runs

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v))) - 1))]

def lat(rows, key):
    v = [r[key] * 1000 for r in rows]
    return pct(v, 50), pct(v, 99), max(v)

def ordered(rows):
    """Runs inserted in order of their fire times (ties in any order)."""
    keys = [unix(r["fire_time"]) for r in sorted(rows, key=lambda r: r["run_id"])]
    return keys == sorted(keys)

def worst_inversion_ms(rows):
    """The largest amount by which a run started before one that was due earlier."""
    times = [unix(r["fire_time"]) for r in sorted(rows, key=lambda r: r["run_id"])]
    worst, latest = 0.0, float("-inf")
    for t in times:
        worst = max(worst, latest - t)
        latest = max(latest, t)
    return worst * 1000

out = {"bench": "dispatch", "tasks": 1000, "max_concurrent_tasks": 16}
for case, label in (("ten", "10"), ("thousand", "1000"), ("spread", "1000_spread30s")):
    rows, runs = starts(case)
    r50, r99, rmax = lat(rows, "dispatch_latency_sec")
    s50, s99, smax = lat(rows, "start_latency_sec")
    print(f"dispatch_{label}_row_p50: {r50:.2f} ms")
    print(f"dispatch_{label}_row_p99: {r99:.2f} ms")
    print(f"dispatch_{label}_row_max: {rmax:.2f} ms")
    print(f"dispatch_{label}_start_p50: {s50:.1f} ms")
    print(f"dispatch_{label}_start_p99: {s99:.1f} ms")
    print(f"dispatch_{label}_in_fire_order: {ordered(rows)}"
          f" (worst inversion {worst_inversion_ms(rows):.3f} ms)")
    out.update({f"{label}_row_p50_ms": round(r50, 3), f"{label}_row_p99_ms": round(r99, 3),
                f"{label}_row_max_ms": round(rmax, 3), f"{label}_start_p50_ms": round(s50, 1),
                f"{label}_start_p99_ms": round(s99, 1), f"{label}_runs": len(runs),
                f"{label}_in_fire_order": ordered(rows)})
    if case != "ten":
        fires = [unix(r["fire_time"]) for r in rows]
        base = min(int(f) // 60 * 60 for f in fires)
        per_sec = Counter(int(f - base) for f in fires)
        print(f"dispatch_{label}_max_fires_per_second: {max(per_sec.values())} fires")
        print(f"dispatch_{label}_fire_window: {max(fires) - min(fires):.3f} s")
        out[f"{label}_max_fires_per_second"] = max(per_sec.values())
        out[f"{label}_fire_window_s"] = round(max(fires) - min(fires), 3)
        if case == "spread":
            offsets = {r["task"]: round((unix(r["fire_time"]) - base) * 1000) % 60000
                       for r in rows}
            st = json.load(open(f"{work}/status.json"))
            again = {t["name"]: round(unix(t["next_run"]) * 1000) % 60000 for t in st["tasks"]}
            same = sum(offsets[k] == again.get(k) for k in offsets)
            print(f"dispatch_spread_offsets_same_in_second_daemon: {same}/{len(offsets)} tasks")
            out["spread_offsets_same"] = same
out["row_p99_ratio_1000_to_10"] = round(out["1000_row_p99_ms"] / max(out["10_row_p99_ms"], 1e-3), 1)
out["max_fires_per_second_ratio_spread"] = round(
    out["1000_max_fires_per_second"] / out["1000_spread30s_max_fires_per_second"], 1)
print(f"dispatch_row_p99_ratio_1000_to_10: {out['row_p99_ratio_1000_to_10']} x")
print(f"dispatch_peak_fires_per_second_without_to_with_spread: {out['max_fires_per_second_ratio_spread']} x")
print(json.dumps(out))
PY
