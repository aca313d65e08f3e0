#!/usr/bin/env bash
# bench/store_growth.sh — the store benchmark of issue 16.
#
# 1. Growth: 30-day stores of 100 and 1,000 servers (bench_store build),
#    events and bytes per day.
# 2. 10,000 servers checked every 60 s for 31 simulated days through the
#    real write paths (bench_store.c says exactly what is written), then
#    the daemon's prune (retention job: events, runs, notifications past
#    30 days, health_history downsampled past 48 h and deleted past 30
#    days, incremental vacuum) while a writer inserts events every 20 ms:
#    longest batch and the writer's longest wait. Baseline in the same run:
#    the same prune in one transaction (the former prune) on a copy.
# 3. Queries on the 30-day store through the real CLI (wall time of the
#    process): trace of one run, runs --limit 50, runs --task, servers,
#    incidents --open; and a /metrics and /healthz scrape of a daemon
#    started on the store with no task due. Baseline: the same commands on
#    the copy with the indexes they use dropped.
# Prints `name: value unit` lines and one JSON line {"bench": "store_growth"}.
#
#   bench/store_growth.sh [BUILD_DIR]
#     env: SERVERS=10000 DAYS=31 REPEAT=5 GROWTH="100 1000" (sizes of part 1)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-bench}
export FK_BUILD=$BUILD FK_ROOT=$ROOT
exec /usr/bin/python3 - <<'EOF'
import json, os, re, shutil, signal, socket, sqlite3, statistics, subprocess, sys, tempfile, time
import urllib.request
from pathlib import Path

BUILD = Path(os.environ["FK_BUILD"])
BIN, HELPER = str(BUILD / "fleetkeeper"), str(BUILD / "bench" / "bench_store")
SERVERS = int(os.environ.get("SERVERS", "10000"))
DAYS = int(os.environ.get("DAYS", "31"))
REPEAT = int(os.environ.get("REPEAT", "5"))
tmp = Path(tempfile.mkdtemp(prefix="fk_bench_store_"))
out = {"bench": "store_growth", "servers": SERVERS, "days": DAYS}


def say(name, value, unit=""):
    print(f"{name}: {value} {unit}".rstrip(), flush=True)


def helper(*args):
    r = subprocess.run([HELPER, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench_store {args[0]}: {r.stderr}")
    vals = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^(\w+): ([-\d.]+)", line)
        if m:
            vals[m.group(1)] = float(m.group(2))
    return r.stdout, vals


def db_bytes(path):
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))


def conf_for(state_dir, port=0):
    conf = state_dir.parent / f"{state_dir.name}.conf"
    conf.write_text(f"""[daemon]
state_dir = {state_dir}
retention_days = 36500
check_history_days = 36500
check_history_raw_hours = 8760
[metrics]
listen = {"127.0.0.1:%d" % port if port else ""}
""")
    return conf


def timed(cmd, n=REPEAT):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            sys.exit(f"{cmd}: {r.stderr.decode()}")
    return statistics.median(times)


try:
    # ---- 1. growth per day at 100 and 1,000 servers (30 days) ----
    for n in [int(x) for x in os.environ.get("GROWTH", "100 1000").split()]:
        d = tmp / f"s{n}"
        d.mkdir()
        _, v = helper("build", d / "state.db", n, 30)
        size = db_bytes(d / "state.db")
        say(f"growth_{n}_events_per_day", int(v["build_events"] / 30), "events")
        say(f"growth_{n}_bytes_per_day", int(size / 30), "bytes")
        say(f"growth_{n}_store_30d", size, "bytes")
        out[f"growth_{n}"] = {"events_per_day": int(v["build_events"] / 30),
                              "bytes_per_day": int(size / 30), "store_30d_bytes": size,
                              "build_sec": v["build_time"]}
        shutil.rmtree(d)

    # ---- 2. the big store and its prune ----
    state = tmp / "state"
    state.mkdir()
    db = state / "state.db"
    text, v = helper("build", db, SERVERS, DAYS)
    print(text, end="")
    out["build"] = v
    size_built = db_bytes(db)
    say("store_built", size_built, "bytes")
    base = tmp / "base"
    base.mkdir()
    shutil.copy(db, base / "state.db")
    text, pv = helper("prune", db)
    print(text, end="")
    text, bv = helper("prune-unbatched", base / "state.db")
    print(text, end="")
    size30 = db_bytes(db)
    con = sqlite3.connect(db)
    rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("events", "task_runs", "health_history", "incidents", "notifications")}
    raw = con.execute("SELECT count(*) FROM health_history WHERE samples IS NOT NULL").fetchone()[0]
    cid = con.execute("SELECT correlation_id FROM task_runs WHERE task = 'health_check'"
                      " ORDER BY id DESC LIMIT 1 OFFSET ?", (rows["task_runs"] // 4,)).fetchone()[0]
    con.close()
    say("store_30d", size30, "bytes")
    say("store_30d_per_day", int(size30 / 30), "bytes")
    say("store_30d_events_per_day", int(rows["events"] / 30), "events")
    for t, c in rows.items():
        say(f"rows_{t}", c)
    say("rows_health_history_raw", raw)
    out.update(store_30d_bytes=size30, rows=rows, health_history_raw_rows=raw,
               prune={"longest_batch_ms": pv["prune_longest_batch"],
                      "writer_max_wait_ms": pv["prune_writer_max_wait"],
                      "batches": pv["prune_batches"], "total_sec": pv["prune_total"]},
               prune_unbatched={"longest_batch_ms": bv["prune_unbatched_longest_batch"],
                                "writer_max_wait_ms": bv["prune_unbatched_writer_max_wait"]})
    say("prune_ratio_lock_hold", "%.1f" % (bv["prune_unbatched_longest_batch"] /
                                           max(pv["prune_longest_batch"], 0.01)), "x")

    # ---- 3. queries through the CLI, with and without the indexes ----
    def queries(state_dir, tag):
        conf = conf_for(state_dir)
        res = {
            "trace": timed([BIN, "-c", conf, "trace", cid]),
            "runs_limit_50": timed([BIN, "-c", conf, "runs", "--limit", "50"]),
            "runs_task": timed([BIN, "-c", conf, "runs", "--task", "github_sync", "--limit", "50"]),
            "servers": timed([BIN, "-c", conf, "servers"]),
            "incidents_open": timed([BIN, "-c", conf, "incidents", "--open"]),
            "version": timed([BIN, "--version"]),
        }
        for k, ms in res.items():
            say(f"{tag}_{k}", "%.1f" % ms, "ms")
        return res

    q = queries(state, "query")
    con = sqlite3.connect(base / "state.db")
    for idx in ("events_correlation", "task_runs_task", "incidents_server", "incidents_detected"):
        con.execute(f"DROP INDEX IF EXISTS {idx}")
    con.commit()
    con.close()
    qb = queries(base, "query_noindex")
    for k in q:
        if k != "version":
            say(f"query_ratio_{k}", "%.1f" % (qb[k] / q[k]), "x")
    out.update(queries_ms=q, queries_noindex_ms=qb)

    # ---- the scrape of a daemon on the 30-day store ----
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    conf = conf_for(state, port)
    daemon = subprocess.Popen([BIN, "-c", conf, "run"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 60
    for line in daemon.stdout:
        if "metrics_listening" in line or time.time() > deadline:
            break

    def scrape(path):
        times, body = [], b""
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
                body = r.read()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times), len(body)

    ms, nbytes = scrape("/metrics")
    hz, _ = scrape("/healthz")
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=30)
    say("metrics_scrape", "%.1f" % ms, "ms")
    say("metrics_scrape_bytes", nbytes, "bytes")
    say("healthz", "%.1f" % hz, "ms")
    out.update(metrics_scrape_ms=ms, metrics_bytes=nbytes, healthz_ms=hz)
    print(json.dumps(out))
finally:
    shutil.rmtree(tmp, ignore_errors=True)
EOF
