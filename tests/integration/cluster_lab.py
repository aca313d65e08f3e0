"""Several fleetkeeper daemons on one PostgreSQL (docs/cluster.md): what
test_cluster.py and the benchmarks bench/failover.py and bench/chaos.py
share.

A Lab is one database on the session's PostgreSQL (pg.py) and the nodes
started on it: each node has its own state directory, control socket and
[cluster] instance name, and runs `fleetkeeper run` through conftest's
Daemon (its JSON lines collected on a thread). The analysis helpers read
the task_runs rows and the nodes' events back and check the cluster's
promises: one row per nominal fire, no overlap for an overlap = skip task,
every row finished, the gap after each leader death.
"""
import datetime
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pg
from conftest import BIN, DEADLINE, Daemon, base_env, wait_until

FAILOVER = 3.0  # seconds: [cluster] failover_timeout in the tests


def ts(event):
    """An event's timestamp as unix seconds."""
    return datetime.datetime.fromisoformat(event["timestamp"]).timestamp()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One daemon's directory and configuration; start() runs it."""

    def __init__(self, lab, name, tasks, metrics=False, log_level="debug", failover=None):
        self.lab = lab
        self.name = name
        self.dir = lab.root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = self.dir / "var"
        self.sock = self.state / "fk.sock"
        self.conf = self.dir / "fleetkeeper.conf"
        self.extra_env = {}
        self.metrics_port = free_port() if metrics else None
        metrics_section = (f"[metrics]\nlisten = 127.0.0.1:{self.metrics_port}\n"
                           if metrics else "")
        self.conf.write_text(f"""[daemon]
state_dir = {self.state}
control_socket = {self.sock}
max_concurrent_tasks = 4
shutdown_grace = 5s

[log]
level = {log_level}

[store]
backend = postgresql
dsn = {lab.dsn}

[cluster]
instance = {name}
failover_timeout = {int((failover or lab.failover) * 1000)}ms

{metrics_section}
{tasks}
""")
        self.daemon = None
        self.lives = []  # every Daemon this node ran, oldest first
        self.stopped = False

    def ensure_store(self):  # conftest.Daemon's Env interface
        pass

    def start(self):
        self.daemon = Daemon(self)
        self.lives.append(self.daemon)
        self.stopped = False
        return self.daemon

    @property
    def alive(self):
        return self.daemon is not None and self.daemon.proc.poll() is None

    def events(self, name=None):
        out = []
        for d in self.lives:
            with d.lock:
                out += [e for e in d.events if name is None or e.get("event") == name]
        return out

    def kill(self):
        self.cont()
        self.daemon.proc.kill()
        self.daemon.proc.wait(timeout=DEADLINE)

    def sigstop(self):
        os.kill(self.daemon.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        if self.stopped and self.daemon and self.daemon.proc.poll() is None:
            os.kill(self.daemon.proc.pid, signal.SIGCONT)
        self.stopped = False

    def stop(self):
        self.cont()
        if self.daemon:
            self.daemon.stop()

    def cli(self, *args, timeout=DEADLINE):
        return subprocess.run([BIN, "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=timeout, env=base_env(), cwd=self.dir)

    def is_leader(self):
        """By its own events: the last of elected/lost of its current life."""
        if not self.alive:
            return False
        last = None
        with self.daemon.lock:
            for e in self.daemon.events:
                if e.get("event") in ("cluster_leader_elected", "cluster_leader_lost"):
                    last = e["event"]
        return last == "cluster_leader_elected"


class Lab:
    """A database and its nodes."""

    def __init__(self, root, failover=FAILOVER):
        self.root = Path(root)
        self.failover = failover
        self.srv = pg.server()
        self.dbname = self.srv.new_database()
        self.dsn = self.srv.dsn(self.dbname)
        self.nodes = []
        self._con = None

    def node(self, name, tasks, **kw):
        n = Node(self, name, tasks, **kw)
        self.nodes.append(n)
        return n

    def connect(self):
        if self._con is None or self._con.closed:
            import psycopg2

            self._con = psycopg2.connect(host=self.srv.host, port=self.srv.port,
                                         dbname=self.dbname, user=pg.ROLE)
            self._con.autocommit = True
        return self._con

    def sql(self, query, *params):
        for attempt in range(50):
            try:
                with self.connect().cursor() as cur:
                    cur.execute(query, params)
                    return cur.fetchall() if cur.description else []
            except Exception:
                self._con = None
                if attempt == 49:
                    raise
                time.sleep(0.2)

    def wait_sql(self, query, pred, *params, deadline=DEADLINE):
        end = time.monotonic() + deadline
        rows = None
        while time.monotonic() < end:
            try:
                rows = self.sql(query, *params)
                if pred(rows):
                    return rows
            except Exception:
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting on {query!r}: last rows {rows!r}")

    def leader(self, deadline=DEADLINE, exclude=()):
        """The node that leads now (its own events say so), waited for."""
        found = []

        def one():
            found[:] = [n for n in self.nodes if n not in exclude and n.is_leader()]
            return len(found) == 1

        wait_until(one, deadline=deadline, what="exactly one leader")
        return found[0]

    def close(self):
        for n in self.nodes:
            n.cont()
        for n in self.nodes:
            try:
                n.stop()
            except Exception:
                pass
        if self._con is not None:
            self._con.close()
        self.srv.drop_database(self.dbname)

    # ---- the rows ----

    def runs(self, task):
        return self.sql("SELECT id, instance, status, trigger, started_at, finished_at,"
                        " scheduled_for, interrupted_by FROM task_runs WHERE task = %s"
                        " ORDER BY started_at, id", task)


def check_rows(lab, task, interval=None, max_gap=None, cron_minutes=False, since=None):
    """The cluster's promises on one task's rows; returns figures, raises
    AssertionError with the offending rows."""
    rows = [r for r in lab.runs(task) if since is None or r[4] >= since]
    ran = [r for r in rows if r[2] != "skipped"]
    assert all(r[2] != "running" for r in rows), [r for r in rows if r[2] == "running"]
    keyed = [r[6] for r in ran if r[6] is not None]
    assert len(keyed) == len(set(keyed)), "a nominal fire ran twice"
    # no two runs of the task at once (overlap = skip); 50 ms for the clocks
    for a, b in zip(ran, ran[1:]):
        assert b[4] >= a[5] - 0.05, f"overlap: {a} and {b}"
    # fires in order: a later run never stands for an earlier nominal time
    sched = [r for r in ran if r[6] is not None]
    for a, b in zip(sched, sched[1:]):
        assert b[6] > a[6], f"fire repeated or out of order: {a} then {b}"
    gaps = [b[4] - a[4] for a, b in zip(ran, ran[1:])]
    if max_gap is not None:
        assert not gaps or max(gaps) <= max_gap, (max(gaps), max_gap)
    out = {"rows": len(rows), "runs": len(ran), "max_gap_sec": max(gaps) if gaps else 0,
           "interrupted": sum(1 for r in ran if r[2] == "interrupted"),
           "failover_interrupted": sum(1 for r in ran if r[7] == "failover")}
    if cron_minutes and sched:
        minutes = sorted(int(r[6]) for r in sched)
        missing = [m for m in range(minutes[0], minutes[-1] + 1, 60) if m not in minutes]
        assert not missing, f"minutes without a run: {missing}"
        out["minutes"] = len(minutes)
    return out


def elected(lab):
    """Every cluster_leader_elected of every node, by time: (ts, node, term)."""
    return sorted((ts(e), n.name, e["term"]) for n in lab.nodes
                  for e in n.events("cluster_leader_elected"))


def run_chaos(lab, duration, kinds=("kill", "stop", "restart"), nodes=3, seed=None,
              cron=False, command="sleep 0.3", every=None, log=print):
    """Random disruptions of the leader for `duration` seconds; returns the
    list of (kind, node, t_begin) and the figures of check_rows."""
    rnd = random.Random(seed)
    tasks = f"""[task.tick]
type = command
schedule = @every 1s
overlap = skip
command = {command}
"""
    if cron:
        tasks += """
[task.minutely]
type = command
schedule = * * * * *
persistent = true
overlap = skip
command = true
"""
    ns = [lab.node(f"n{i}", tasks, log_level="info") for i in range(nodes)]
    for n in ns:
        n.start()
    lab.leader()
    t0 = time.time()
    done = []
    every = every or (duration / 4)
    while time.time() - t0 < duration - every / 2:
        time.sleep(rnd.uniform(every * 0.6, every * 1.2))
        lead = lab.leader(deadline=DEADLINE)
        kind = rnd.choice(kinds)
        t = time.time()
        log(f"chaos: {kind} {lead.name} at +{t - t0:.1f}s")
        if kind == "kill":
            lead.kill()
            lab.leader(exclude=(lead,))
            lead.start()
        elif kind == "stop":
            lead.sigstop()
            time.sleep(lab.failover + rnd.uniform(0.5, 2.0))
            lead.cont()
        else:
            lead.daemon.stop()
            lead.start()
        done.append((kind, lead.name, t))
    left = duration - (time.time() - t0)
    if left > 0:
        time.sleep(left)
    time.sleep(2)
    for n in ns:
        n.stop()
    return done
