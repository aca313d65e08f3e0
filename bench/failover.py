#!/usr/bin/env python3
"""Benchmark: the cluster on PostgreSQL (issue 17, docs/cluster.md).

  bench/failover.py [FLEETKEEPER_BIN] [KILLS]     (a release build; KILLS 10)

1. Failover time: three daemons on one PostgreSQL run a 1-second interval
   task; the leader is killed (kill -9) KILLS times, each time restarted
   once a new leader runs. Failover = from the kill to the first run row
   started by another instance (task_runs.started_at). Median and worst,
   with failover_timeout = 15 s (the default) and 3 s.
2. Run dispatch cost: the same 1-second task on one daemon, PostgreSQL
   (fenced insert: leadership check + ON CONFLICT in the burst
   transaction) against SQLite in the same run: dispatch_latency_sec of
   <task>_start (fire time -> committed row), median and p99 of 30 fires.
3. Events stored per second: one run printing 20,000 lines (20,000
   command_output events) on each backend: from the first to the last of
   them in the store's events table.

The PostgreSQL server is tests/integration/pg.py's (initdb + pg_ctl in a
temporary directory; fsync off, as in the tests). One JSON line per
figure on stdout.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build-bench" / "fleetkeeper")
KILLS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
os.environ["FLEETKEEPER_BIN"] = BIN
os.environ.setdefault("FK_SOURCE_ROOT", str(ROOT))
os.environ.setdefault("FK_TEST_DEADLINE", "60")
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import cluster_lab  # noqa: E402
import pg  # noqa: E402
from conftest import Daemon, base_env  # noqa: E402

TICK = """[task.tick]
type = command
schedule = @every 1s
overlap = skip
command = true
"""


def emit(**kw):
    print(json.dumps(kw), flush=True)


def failover_times(failover, kills):
    lab = cluster_lab.Lab(tempfile.mkdtemp(prefix="fk-failover-"), failover=failover)
    try:
        nodes = [lab.node(f"n{i}", TICK, log_level="info") for i in range(3)]
        for n in nodes:
            n.start()
        times = []
        for _ in range(kills):
            lead = lab.leader(deadline=failover * 4 + 30)
            lab.wait_sql("SELECT count(*) FROM task_runs WHERE instance = %s AND started_at > %s",
                         lambda r: r[0][0] >= 2, lead.name, time.time(), deadline=60)
            t = time.time()
            lead.kill()
            rows = lab.wait_sql("SELECT min(started_at) FROM task_runs WHERE instance <> %s"
                                " AND started_at > %s AND status <> 'skipped'",
                                lambda r: r[0][0] is not None, lead.name, t,
                                deadline=failover * 4 + 30)
            times.append(rows[0][0] - t)
            lead.start()
        for n in nodes:
            n.stop()
        figures = cluster_lab.check_rows(lab, "tick")
        return times, figures
    finally:
        lab.close()


class Single:
    """One daemon, on SQLite or on PostgreSQL (its own database)."""

    def __init__(self, backend, tasks):
        self.dir = Path(tempfile.mkdtemp(prefix=f"fk-{backend}-"))
        self.conf = self.dir / "fleetkeeper.conf"
        self.extra_env = {}
        self.backend = backend
        store = ""
        if backend == "postgresql":
            self.srv = pg.server()
            self.dbname = self.srv.new_database()
            store = f"[store]\nbackend = postgresql\ndsn = {self.srv.dsn(self.dbname)}\n" \
                    f"[cluster]\ninstance = solo\n"
        self.conf.write_text(f"""[daemon]
state_dir = {self.dir}/var
control_socket = {self.dir}/var/fk.sock
max_concurrent_tasks = 4
[log]
level = info
{store}
{tasks}
""")

    def ensure_store(self):
        pass

    def sql(self, q):
        if self.backend == "postgresql":
            con = self.srv.connect(self.dbname)
            try:
                with con.cursor() as cur:
                    cur.execute(q)
                    return cur.fetchall()
            finally:
                con.close()
        import sqlite3
        con = sqlite3.connect(self.dir / "var" / "state.db", timeout=10)
        try:
            return con.execute(q).fetchall()
        finally:
            con.close()

    def close(self):
        if self.backend == "postgresql":
            self.srv.drop_database(self.dbname)


def dispatch_cost(backend, fires=30):
    s = Single(backend, TICK)
    d = Daemon(s)
    try:
        evs = d.wait_for("tick_start", count=fires, deadline=fires + 30)
        lat = sorted(e["dispatch_latency_sec"] for e in evs[:fires])
        return statistics.median(lat), lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0]
    finally:
        d.stop()
        s.close()


def events_per_sec(backend, lines=20000):
    s = Single(backend, f"""[task.flood]
type = command
run_on_start = true
command = seq 1 {lines}
""")
    d = Daemon(s)
    try:
        d.wait_for("flood_complete", deadline=120)
        q = "SELECT count(*), min(unix_time), max(unix_time) FROM events WHERE event = 'command_output'"
        end = time.monotonic() + 120
        while True:
            n, t0, t1 = s.sql(q)[0]
            if n >= lines or time.monotonic() > end:
                break
            time.sleep(0.2)
        # the writer's own timestamps are the events'; the store's commit
        # is measured by polling: from the run's start to the last row seen
        start = min(e for e in [t0] if e is not None)
        t_seen = time.time()
        return n / max(t_seen - start, 1e-6), n / max(t1 - t0, 1e-6), n
    finally:
        d.stop()
        s.close()


def main():
    for fo in (15.0, 3.0):
        times, figures = failover_times(fo, KILLS)
        emit(bench="cluster_failover", failover_timeout_sec=fo, kills=len(times),
             median_sec=round(statistics.median(times), 3), worst_sec=round(max(times), 3),
             all_sec=[round(t, 3) for t in times], rows_checked=figures["runs"],
             max_gap_sec=round(figures["max_gap_sec"], 3))
    for backend in ("sqlite", "postgresql"):
        med, p99 = dispatch_cost(backend)
        emit(bench="cluster_dispatch_cost", backend=backend, fires=30,
             dispatch_latency_median_ms=round(med * 1000, 3),
             dispatch_latency_p99_ms=round(p99 * 1000, 3))
    for backend in ("sqlite", "postgresql"):
        seen, emitted, n = events_per_sec(backend)
        emit(bench="cluster_events_stored", backend=backend, events=n,
             stored_per_sec=round(seen), emitted_per_sec=round(emitted))
    pg.stop()


if __name__ == "__main__":
    main()
