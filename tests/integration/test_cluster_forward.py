"""Requests from any node (issue 17, docs/cluster.md): two daemons on one
PostgreSQL, node-a the leader and node-b a standby. trigger and recover on
the standby's control socket are forwarded through the store
(cluster_requests + LISTEN/NOTIFY) and run once, on the leader; --follow
streams the run's events from the shared events table; status on the
standby says standby and names the leader; one recovery per server holds
across machines (recovery_locks).

These tests always use PostgreSQL (pg.py), whatever FK_TEST_BACKEND says:
there is no cluster on SQLite."""
import json
import socket
import threading
import time

import pytest

import pg
from conftest import DEADLINE, Env, parse_lines, wait_until
from sshd import keygen

pytestmark = pytest.mark.skipif(not pg.available(), reason="no PostgreSQL server binaries")

TASKS = """
[task.hello]
type = command
command = echo "hello from NODE"

[task.bad]
type = command
command = echo one; echo two; exit 3
"""


class Node:
    """One daemon's state directory and configuration on the shared database."""

    def __init__(self, tmp, name, srv, dbname, extra=""):
        d = tmp / name
        d.mkdir()
        self.env = Env(d)
        self.name = name
        # written here, not by Env.write_config: every node on the one
        # shared database (Env's own, on PostgreSQL runs, is left unused)
        self.env.conf.write_text(f"""[daemon]
state_dir = {self.env.state}
control_socket = {self.env.sock}
max_concurrent_tasks = 4
shutdown_grace = 10s

[store]
backend = postgresql
dsn = {srv.dsn(dbname)}

[cluster]
instance = {name}
failover_timeout = 3s
{TASKS.replace("NODE", name)}
{extra}
""")


@pytest.fixture
def cluster(tmp_path):
    srv = pg.server()
    dbname = srv.new_database()
    con = srv.connect(dbname, user=pg.ROLE)
    con.autocommit = True
    nodes = []

    def node(name, extra=""):
        n = Node(tmp_path, name, srv, dbname, extra)
        nodes.append(n)
        return n

    def sql(query, *params):
        with con.cursor() as cur:
            cur.execute(query.replace("?", "%s"), params)
            return cur.fetchall() if cur.description is not None else None

    def wait_sql(query, pred, *params, deadline=DEADLINE):
        end = time.monotonic() + deadline
        rows = None
        while time.monotonic() < end:
            rows = sql(query, *params)
            if pred(rows):
                return rows
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting on {query!r}: last rows {rows!r}")

    yield type("Cluster", (), {"node": staticmethod(node), "sql": staticmethod(sql),
                               "wait_sql": staticmethod(wait_sql), "srv": srv})
    con.close()
    for n in nodes:
        n.env.close()
    srv.drop_database(dbname)


@pytest.fixture
def pair(cluster, daemons):
    """node-a leading, node-b its standby."""
    a, b = cluster.node("node-a"), cluster.node("node-b")
    da = daemons(a.env)
    da.wait_for("cluster_leader_elected")
    db = daemons(b.env)
    db.wait_for("cluster_standby")
    return a, b, da, db


def one_line(r, prefix):
    lines = [l for l in r.stdout.splitlines() if l.startswith(prefix)]
    assert len(lines) == 1, r.stdout + r.stderr
    return dict(kv.split("=", 1) for kv in lines[0].split())


def test_trigger_on_the_standby_runs_once_on_the_leader(cluster, pair):
    a, b, da, db = pair
    r = b.env.run("trigger", "hello")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "standby: forwarded to the leader node-a" in r.stderr
    got = one_line(r, "run_id=")
    cid = got["correlation_id"]
    rows = cluster.wait_sql("SELECT id, status, instance, correlation_id FROM task_runs"
                            " WHERE task = 'hello' AND status <> 'running'", lambda r: r)
    assert [(row[1], row[2], row[3]) for row in rows] == [("success", "node-a", cid)]
    assert str(rows[0][0]) == got["run_id"]
    (served,) = da.wait_for(lambda e: e.get("event") == "cluster_request_served")
    assert served["from_instance"] == "node-b" and served["ok"] is True
    assert served["run_correlation_id"] == cid
    (fwd,) = db.named("cluster_request_forwarded")
    assert fwd["leader"] == "node-a" and fwd["run_correlation_id"] == cid
    req = cluster.sql("SELECT kind, from_instance, state, reply FROM cluster_requests")
    assert [(k, f, s) for k, f, s, _ in req] == [("trigger", "node-b", "done")]
    assert json.loads(req[0][3])["correlation_id"] == cid
    # the leader ran it (its output), the standby ran nothing
    da.wait_for(lambda e: e.get("event") == "command_output" and e.get("line") == "hello from node-a")
    assert not [e for e in db.events if e.get("event") in ("hello_start", "command_output")]
    # still exactly one run a moment later (no second claim)
    db.wait_for("cluster_request_forwarded")
    assert cluster.sql("SELECT count(*) FROM task_runs WHERE task = 'hello'") == [(1,)]


@pytest.mark.parametrize("task,code,last", [("hello", 0, "hello_complete"),
                                            ("bad", 1, "bad_failed")])
def test_trigger_follow_on_the_standby_streams_the_leaders_run(cluster, pair, task, code, last):
    a, b, da, db = pair
    r = b.env.run("trigger", task, "--follow")
    assert r.returncode == code, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("run_id=")
    cid = one_line(r, "run_id=")["correlation_id"]
    streamed = parse_lines("\n".join(lines[1:]))
    names = [e["event"] for e in streamed]
    assert names[-1] == last and f"{task}_start" in names
    assert all(e["correlation_id"] == cid for e in streamed)
    outputs = [e["line"] for e in streamed if e["event"] == "command_output"]
    assert outputs == (["hello from node-a"] if task == "hello" else ["one", "two"])
    assert cluster.sql("SELECT instance FROM task_runs WHERE correlation_id = ?", cid) == \
        [("node-a",)]


def test_status_on_the_standby_says_standby_and_names_the_leader(cluster, pair):
    a, b, da, db = pair
    r = a.env.run("trigger", "hello")  # on the leader itself: not forwarded
    assert r.returncode == 0 and "forwarded" not in r.stderr, r.stderr
    cluster.wait_sql("SELECT status FROM task_runs WHERE task = 'hello'",
                     lambda rows: rows == [("success",)])
    r = b.env.run("status", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["daemon"]["role"] == "standby" and st["daemon"]["instance"] == "node-b"
    assert st["daemon"]["leader"] == "node-a"
    assert st["live"] is False and "node-a" in st["note"]
    hello = [t for t in st["tasks"] if t["name"] == "hello"][0]
    assert hello["last_status"] == "success" and hello["live"] is False
    r = b.env.run("status")
    assert r.returncode == 0, r.stderr
    assert "standby" in r.stdout and "node-a" in r.stdout
    st = json.loads(a.env.run("status", "--json").stdout)
    assert st["daemon"]["role"] == "leader" and st["live"] is True


def test_a_request_nobody_took_in_time_fails_and_never_runs(cluster, pair):
    """A queued request older than the deadline (failover_timeout + 10 s) is
    failed by the leader with error_type no_leader, not run late."""
    a, b, da, db = pair
    body = json.dumps({"cmd": "trigger", "task": "hello", "correlation_id": "old-1"})
    cluster.sql("INSERT INTO cluster_requests(kind, body, from_instance, state, created_at)"
                " VALUES ('trigger', ?, 'node-b', 'queued', ?)", body, time.time() - 3600)
    cluster.sql("SELECT pg_notify('fk_requests', '0')")
    rows = cluster.wait_sql("SELECT state, reply FROM cluster_requests",
                            lambda rows: rows and rows[0][0] != "queued")
    assert rows[0][0] == "failed"
    assert json.loads(rows[0][1])["error_type"] == "no_leader"
    # a fresh one after it runs
    r = b.env.run("trigger", "hello")
    assert r.returncode == 0, r.stderr
    assert cluster.sql("SELECT correlation_id FROM task_runs WHERE task = 'hello'") != \
        [("old-1",)]
    assert cluster.sql("SELECT count(*) FROM task_runs WHERE correlation_id = 'old-1'") == [(0,)]


class SilentSsh:
    """A TCP port that accepts and never says anything: an SSH test of it
    waits in the handshake until the connection is closed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def add_server(cluster, handle, port):
    now = time.time()
    cluster.sql("INSERT INTO servers(handle, ip, port, ssh_user, status, is_managed,"
                " created_at, updated_at) VALUES (?, '127.0.0.1', ?, 'root', 'error', 1, ?, ?)",
                handle, port, now, now)
    cluster.sql("INSERT INTO services(server_id, name, git_repo, port, start_command,"
                " created_at, updated_at) SELECT id, 'alpha', 'file:///nonexistent.git', 1,"
                " 'true', ?, ? FROM servers WHERE handle = ?", now, now, handle)


def test_recover_from_the_standby_and_one_recovery_per_server_across_nodes(
        cluster, daemons, tmp_path):
    silent = SilentSsh()
    try:
        key = keygen(tmp_path / "id_ed25519")
        ssh = (f"\n[ssh]\nkey_file = {key}\nknown_hosts = {tmp_path / 'known_hosts'}\n"
               "host_key_policy = accept-new\nhandshake_timeout = 60s\ntimeout = 60s\n")
        a, b = cluster.node("node-a", ssh), cluster.node("node-b", ssh)
        da = daemons(a.env)
        da.wait_for("cluster_leader_elected")
        db = daemons(b.env)
        db.wait_for("cluster_standby")
        add_server(cluster, "vps-1", silent.port)

        follower = b.env.start("recover", "vps-1", "--follow")
        rows = cluster.wait_sql("SELECT instance, correlation_id FROM recovery_locks"
                                " WHERE server = 'vps-1'", lambda r: r)
        (holder, cid), = rows
        assert holder == "node-a"  # the leader runs it
        wait_until(lambda: silent.conns, what="the recovery's SSH test to connect")

        # the other node (the leader's own socket): refused, the existing message
        second = a.env.run("recover", "vps-1")
        assert second.returncode == 1
        assert f"already recovering vps-1 (correlation_id {cid})" in second.stderr
        # a third machine without a daemon, in-process: the store's lock refuses it
        c = cluster.node("node-c", ssh)
        third = c.env.run("recover", "vps-1")
        assert third.returncode == 1, third.stdout[-2000:] + third.stderr
        assert (f"already recovering vps-1 (correlation_id {cid}) on instance node-a"
                in third.stderr)
        assert "incident_recovery_start" not in third.stdout
        # through the standby again: forwarded, refused by the leader
        fourth = b.env.run("recover", "vps-1")
        assert fourth.returncode == 1 and "already recovering vps-1" in fourth.stderr

        silent.close()  # the SSH test fails now, and so does the recovery
        out, err = follower.communicate(timeout=DEADLINE * 2)
        assert follower.returncode == 1, out[-3000:] + err
        assert "forwarded to the leader node-a" in err
        streamed = parse_lines("\n".join(out.splitlines()[1:]))
        names = [e["event"] for e in streamed]
        assert names[-1] == "recover_failed" and "incident_recovery_start" in names, names
        assert all(e["correlation_id"] == cid for e in streamed)
        runs = cluster.sql("SELECT task, instance, correlation_id FROM task_runs")
        assert runs == [("recover", "node-a", cid)]
        cluster.wait_sql("SELECT * FROM recovery_locks", lambda r: r == [])
    finally:
        silent.close()
