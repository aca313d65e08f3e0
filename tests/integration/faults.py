"""Helpers for the fault-injection tests (tests/integration/test_faults.py):
a daemon whose stdout the test chooses, RSS from /proc, a store integrity
check, and the wait/kill primitives those tests share."""
import os
import signal
import sqlite3
import subprocess
import time

from conftest import BIN, DEADLINE, ON_PG, STORE_ERRORS, base_env


def rss_kb(pid):
    """Resident set size of pid in KiB (VmRSS from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def integrity_check(env):
    """[("ok",)] when the store is sound: SQLite's PRAGMA integrity_check;
    on PostgreSQL (crash-safe by itself) every table of the schema reads
    back, row counts and all."""
    if ON_PG:
        tables = [t for (t,) in env.sql("SELECT tablename FROM pg_tables"
                                        " WHERE schemaname = 'public' ORDER BY 1")]
        if not tables:
            return [("no tables",)]
        for t in tables:
            env.sql(f"SELECT count(*) FROM {t}")
        return [("ok",)]
    con = sqlite3.connect(f"file:{env.db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


class RawDaemon:
    """`fleetkeeper run` with stdout wired as the test wants (a pipe nobody
    reads, /dev/null, a closed fd); the test reads the store instead."""

    def __init__(self, env, stdout, extra_env=None, prefix=(), close_stdout=False):
        self.env = env
        env.ensure_store()
        kw = {}
        if close_stdout:
            # the daemon starts with fd 1 closed
            kw["preexec_fn"] = lambda: os.close(1)
        self.proc = subprocess.Popen(
            [*prefix, BIN, "-c", str(env.conf), "run"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=base_env(**(extra_env or {})),
            cwd=env.dir,
            start_new_session=True,
            **kw,
        )

    def alive(self):
        return self.proc.poll() is None

    def stop(self, deadline=DEADLINE):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError("daemon did not stop on SIGTERM")
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return self.proc.returncode, err

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stderr.close()


def count_rows(env, query, *params):
    try:
        return env.sql(query, *params)[0][0]
    except STORE_ERRORS:
        return -1


def wait_rows(env, query, pred, *params, deadline=DEADLINE, what=None):
    """Poll a COUNT(*)-style query until pred(value) holds."""
    end = time.monotonic() + deadline
    v = None
    while time.monotonic() < end:
        v = count_rows(env, query, *params)
        if v >= 0 and pred(v):
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or query}: last {v}")


def runs_go_ahead_unrecorded(d):
    """While the store refuses writes, fires still run: task_run_unrecorded,
    then the run's own events on stdout. Returns the runs' correlation ids."""
    unrecorded = d.wait_for(lambda e: e.get("event") == "task_run_unrecorded", count=2,
                            what="2 runs that went ahead without their row")
    assert all(e["error_type"] == "store" and e["task"] == "t" for e in unrecorded)
    cids = [e["correlation_id"] for e in unrecorded]
    for cid in cids:
        d.wait_for(lambda e, c=cid: e.get("event") == "t_complete"
                   and e.get("correlation_id") == c, what=f"t_complete of {cid}")
    return cids


def spell_events_stored(env, cids):
    for cid in cids:
        env.wait_sql("SELECT count(*) FROM events WHERE correlation_id = ? AND event = 't_complete'",
                     lambda r: r[0][0] == 1, cid)
