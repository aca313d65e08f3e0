#!/usr/bin/env python3
"""Chaos run of the cluster (issue 17, "Done when"): a benchmark, not in
the suite's CI run.

  bench/chaos.py [FLEETKEEPER_BIN] [SECONDS]      (default 200 s)

Three daemons on one PostgreSQL (tests/integration/pg.py), failover_timeout
= 3 s, a 1-second interval task (overlap = skip, `sleep 0.3`) and an
every-minute cron task with persistent = true. At random moments the leader
is killed (kill -9, then restarted), stopped (SIGSTOP longer than
failover_timeout, then SIGCONT) or restarted (SIGTERM, start). Then, for
every nominal fire in the window: exactly one run row, no two runs of the
overlap = skip task at once, every row finished (success or interrupted),
the gap between two runs of the interval task (so after each leader death)
at most failover_timeout + one interval (+ 1.5 s of slack for the next
heartbeat), and every minute of the cron task has its run. One JSON line.
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build-bench" / "fleetkeeper")
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 200
os.environ["FLEETKEEPER_BIN"] = BIN
os.environ.setdefault("FK_SOURCE_ROOT", str(ROOT))
os.environ.setdefault("FK_TEST_DEADLINE", "60")
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import cluster_lab  # noqa: E402
import pg  # noqa: E402


def main():
    seed = int(os.environ.get("FK_CHAOS_SEED", time.time()))
    lab = cluster_lab.Lab(tempfile.mkdtemp(prefix="fk-chaos-"))
    ok, why = True, None
    try:
        t0 = time.time()
        done = cluster_lab.run_chaos(lab, SECONDS, seed=seed, cron=True, every=20,
                                     log=lambda m: print(m, file=sys.stderr, flush=True))
        tick = minutely = {}
        try:
            tick = cluster_lab.check_rows(lab, "tick",
                                          max_gap=cluster_lab.FAILOVER + 1 + 1.5)
            minutely = cluster_lab.check_rows(lab, "minutely", cron_minutes=True)
        except AssertionError as e:
            ok, why = False, str(e)[:500]
        print(json.dumps({
            "bench": "cluster_chaos", "ok": ok, "error": why, "seed": seed,
            "seconds": round(time.time() - t0, 1), "daemons": 3,
            "failover_timeout_sec": cluster_lab.FAILOVER,
            "events": [[k, n, round(t - t0, 1)] for k, n, t in done],
            "kills": sum(1 for k, _, _ in done if k == "kill"),
            "sigstops": sum(1 for k, _, _ in done if k == "stop"),
            "restarts": sum(1 for k, _, _ in done if k == "restart"),
            "terms": len(cluster_lab.elected(lab)),
            "tick": tick, "minutely": minutely}), flush=True)
    finally:
        lab.close()
        pg.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
