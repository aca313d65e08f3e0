"""Several daemons on one PostgreSQL (issue 17, docs/cluster.md): exactly one
leader, failover within failover_timeout, a deposed leader that starts
nothing, PostgreSQL itself going away, and a short chaos run. These tests
always use PostgreSQL (pg.py starts one), whatever FK_TEST_BACKEND says;
they are skipped without its binaries or psycopg2.
"""
import json
import signal
import time
import urllib.request

import pytest

import pg

try:
    import psycopg2  # noqa: F401
except ImportError:  # pragma: no cover
    psycopg2 = None

pytestmark = pytest.mark.skipif(not pg.available() or psycopg2 is None,
                                reason="no PostgreSQL binaries or psycopg2")

from cluster_lab import FAILOVER, Lab, check_rows, elected, run_chaos, ts  # noqa: E402
from conftest import DEADLINE, wait_until  # noqa: E402

TICK = """[task.tick]
type = command
schedule = @every 1s
overlap = skip
command = sleep 0.2
"""

# A run that is still going when its daemon dies or stops.
LONG = """[task.long]
type = command
schedule = @every 1h
run_on_start = true
command = sleep 120
"""


@pytest.fixture
def lab(tmp_path):
    lb = Lab(tmp_path)
    yield lb
    lb.close()


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_runs(lab, task, n, instance=None, since=0.0):
    q = "SELECT count(*) FROM task_runs WHERE task = %s AND status <> 'skipped' AND started_at > %s"
    args = [task, since]
    if instance:
        q += " AND instance = %s"
        args.append(instance)
    lab.wait_sql(q, lambda r: r[0][0] >= n, *args)


def test_one_leader_the_others_standby_and_say_so(lab):
    nodes = [lab.node(n, TICK, metrics=True) for n in ("a", "b", "c")]
    for n in nodes:
        n.start()
    lead = lab.leader()
    others = [n for n in nodes if n is not lead]
    for n in others:
        n.daemon.wait_for(lambda e: e.get("event") == "cluster_standby"
                          and e.get("leader") == lead.name, what="cluster_standby")
    wait_runs(lab, "tick", 3)
    # only the leader dispatches
    assert {r[0] for r in lab.sql("SELECT DISTINCT instance FROM task_runs")} == {lead.name}
    assert lab.sql("SELECT instance FROM cluster_leader") == [(lead.name,)]
    members = dict(lab.sql("SELECT instance, role FROM cluster_members"))
    assert members == {n.name: ("leader" if n is lead else "standby") for n in nodes}
    assert len(elected(lab)) == 1
    for n in nodes:
        want = "leader" if n is lead else "standby"
        st = json.loads(n.cli("status", "--json").stdout)
        assert st["daemon"]["role"] == want and st["daemon"]["leader"] == lead.name
        assert st["daemon"]["instance"] == n.name
        code, body = http_get(n.metrics_port, "/healthz")
        health = json.loads(body)
        assert code == 200, body
        assert health["role"] == want and health["leader"] == lead.name
        code, text = http_get(n.metrics_port, "/metrics")
        assert f"fleetkeeper_cluster_role {1 if n is lead else 0}" in text
        assert (f'fleetkeeper_cluster_leader{{instance="{n.name}"}} {1 if n is lead else 0}'
                in text)
        plain = n.cli("status").stdout
        assert f"cluster: {want} {n.name}, leader {lead.name}" in plain


def test_kill9_leader_another_takes_over_within_failover_timeout(lab):
    nodes = [lab.node(n, TICK + LONG) for n in ("a", "b", "c")]
    for n in nodes:
        n.start()
    lead = lab.leader()
    lead.daemon.wait_for("long_start")
    wait_runs(lab, "tick", 3)
    killed_at = time.time()
    lead.kill()
    new = lab.leader(exclude=(lead,))
    el = [e for e in new.events("cluster_leader_elected")][-1]
    assert el["previous"] == lead.name
    assert ts(el) - killed_at <= FAILOVER + 1.0, ts(el) - killed_at
    wait_runs(lab, "tick", 3, instance=new.name)
    # the dead leader's running row: interrupted by the failover once its
    # heartbeat is older than failover_timeout
    lab.wait_sql("SELECT status, interrupted_by FROM task_runs WHERE task = 'long'"
                 " AND instance = %s", lambda r: r == [("interrupted", "failover")], lead.name)
    first_new = lab.sql("SELECT min(started_at) FROM task_runs WHERE task = 'tick'"
                        " AND instance = %s", new.name)[0][0]
    last_old = lab.sql("SELECT max(started_at) FROM task_runs WHERE task = 'tick'"
                       " AND instance = %s", lead.name)[0][0]
    assert first_new - last_old <= FAILOVER + 1.5, first_new - last_old
    for n in nodes:
        n.stop()
    check_rows(lab, "tick")


def test_sigstop_leader_is_evicted_and_starts_nothing_when_it_wakes(lab):
    nodes = [lab.node(n, TICK + LONG) for n in ("a", "b")]
    for n in nodes:
        n.start()
    lead = lab.leader()
    other = [n for n in nodes if n is not lead][0]
    lead.daemon.wait_for("long_start")
    wait_runs(lab, "tick", 3)
    stopped_at = time.time()
    lead.sigstop()
    other.daemon.wait_for("cluster_leader_elected", deadline=FAILOVER * 3)
    ev = other.events("cluster_leader_evicted")
    assert ev and ev[0]["leader"] == lead.name
    wait_runs(lab, "tick", 3, instance=other.name)
    lab.wait_sql("SELECT status, interrupted_by FROM task_runs WHERE task = 'long'"
                 " AND instance = %s", lambda r: r == [("interrupted", "failover")], lead.name)
    lead.cont()
    lost = lead.daemon.wait_for("cluster_leader_lost")[0]
    assert lost["term"] == 1
    # its run whose row the new leader took over is cancelled, the row stays
    lead.daemon.wait_for("task_run_taken_over")
    lead.daemon.wait_for("task_run_fenced")
    wait_runs(lab, "tick", 2, instance=other.name, since=time.time())
    assert lab.sql("SELECT count(*) FROM task_runs WHERE instance = %s AND started_at > %s",
                   lead.name, stopped_at) == [(0,)]
    assert not lead.events("tick_start") or max(ts(e) for e in lead.events("tick_start")) < \
        stopped_at + 0.1
    assert lab.sql("SELECT status, interrupted_by FROM task_runs WHERE task = 'long'"
                   " AND instance = %s", lead.name) == [("interrupted", "failover")]
    assert other.is_leader() and not lead.is_leader()
    for n in nodes:
        n.stop()
    check_rows(lab, "tick")


def test_terminated_lock_connection_steps_down_before_another_leads(lab):
    nodes = [lab.node(n, TICK) for n in ("a", "b")]
    for n in nodes:
        n.start()
    lead = lab.leader()
    wait_runs(lab, "tick", 3)
    (pid,) = lab.sql("SELECT backend_pid FROM cluster_leader")[0]
    lab.srv.admin(f"SELECT pg_terminate_backend({int(pid)})", dbname=lab.dbname)
    lost = lead.daemon.wait_for("cluster_leader_lost")[0]
    # whoever leads next (the other node, or the same one again)
    wait_until(lambda: len(elected(lab)) >= 2, deadline=FAILOVER * 3, what="a new term")
    nxt = elected(lab)[1]
    assert nxt[2] == 2
    assert ts(lost) < nxt[0], (lost, nxt)
    wait_runs(lab, "tick", 2, since=nxt[0])
    # nothing started by the deposed leader between its step-down and the new term
    assert lab.sql("SELECT count(*) FROM task_runs WHERE instance = %s AND started_at > %s"
                   " AND started_at < %s", lead.name, ts(lost), nxt[0]) == [(0,)]
    starts = [ts(e) for e in lead.events("tick_start")]
    assert not [t for t in starts if ts(lost) < t < nxt[0]]
    for n in nodes:
        n.stop()
    check_rows(lab, "tick")


CRON = """[task.minutely]
type = command
schedule = * * * * *
persistent = true
command = true
"""


def test_postgresql_down_30s_daemons_keep_running_and_resume_once(lab):
    nodes = [lab.node(n, TICK + CRON) for n in ("a", "b")]
    for n in nodes:
        n.start()
    lab.leader()
    wait_runs(lab, "tick", 2)
    # the outage covers a minute boundary: that fire is late, run once. The
    # task has a history (its last fire the minute before), as after a
    # first fire: a new leader continues from it
    wait_until(lambda: time.time() % 60 >= 45, deadline=61, what="second 45")
    prev = (int(time.time()) // 60) * 60
    lab.sql("INSERT INTO task_state (task, last_fire_at, updated_at) VALUES ('minutely', %s, %s)"
            " ON CONFLICT (task) DO UPDATE SET last_fire_at = GREATEST(task_state.last_fire_at,"
            " excluded.last_fire_at)", float(prev), time.time())
    down_at = time.time()
    r = lab.srv.pg_ctl("stop", "-m", "fast")
    assert r.returncode == 0, r.stderr
    try:
        for n in nodes:
            n.daemon.wait_for("store_unavailable")
        for n in nodes:
            assert n.alive
        wait_until(lambda: time.time() - down_at >= 30, deadline=40, what="30 s down")
        for n in nodes:
            assert n.alive
            assert not n.is_leader()
    finally:
        up_at = time.time()
        r = lab.srv.pg_ctl("start")
        pg.wait_accepting(lab.srv)
    assert r.returncode == 0, r.stderr
    lead = lab.leader(deadline=DEADLINE)
    wait_runs(lab, "tick", 3, since=up_at)
    boundary = (int(down_at) // 60 + 1) * 60
    lab.wait_sql("SELECT count(*) FROM task_runs WHERE task = 'minutely' AND scheduled_for = %s",
                 lambda r: r[0][0] == 1, float(boundary))
    # nothing ran that could not be recorded: no start while it was down
    for n in nodes:
        starts = [ts(e) for e in n.events() if e.get("event", "").endswith("_start")
                  and e.get("logger", "").startswith("tasks")]
        assert not [t for t in starts if down_at + 1.0 < t < up_at], n.name
    for n in nodes:
        n.stop()
    assert lead
    check_rows(lab, "tick")
    check_rows(lab, "minutely", cron_minutes=True)


def test_short_chaos_one_run_per_fire_no_overlap(lab):
    done = run_chaos(lab, 40, seed=int(time.time()))
    assert len(done) >= 2
    figures = check_rows(lab, "tick", max_gap=FAILOVER + 1 + 1.5)
    assert figures["runs"] >= 20
