"""Notification producers (issue 9): real runs write their notifications to
the outbox (the notifications table) in the transaction of the state change
that causes them. Asserted on rows: kind, level, order, the run's
correlation_id, fields; and that a state change rolled back because the
outbox insert failed left neither the change nor a row behind.

The outbox failure is injected with a trigger on the notifications table
(RAISE(ABORT)), the way a full disk or a broken table would fail the insert.
"""
import json
import shutil
import time

import pytest

from conftest import drop_trigger, failing_trigger, parse_lines
from fk_ansible import AnsibleHost, needs_ansible, free_port
from replay import Replay
from sshd import Sshd, have_sshd, closed_port

needs_sshd = pytest.mark.skipif(not have_sshd(), reason="needs root and OpenSSH sshd/ssh-keygen")

FAIL_OUTBOX = failing_trigger("fail_outbox", "notifications", "BEFORE INSERT",
                              "outbox unavailable")
DROP_FAIL_OUTBOX = drop_trigger("fail_outbox", "notifications")


def execute(env, query, *params):
    con = env.connect()
    with con:
        con.execute(query, params)
    con.close()


def notes(env, after=0):
    """Rows after id `after`, in id order, fields parsed."""
    return [{"id": i, "kind": k, "level": lv, "title": t, "body": b, "correlation_id": c,
             "fields": json.loads(f) if f else None}
            for i, k, lv, t, b, c, f in env.sql(
                "SELECT id, kind, level, title, body, correlation_id, fields FROM notifications"
                " WHERE id > ? ORDER BY id", after)]


def last_id(env):
    return env.sql("SELECT coalesce(max(id), 0) FROM notifications")[0][0]


def once(env, task, expect_rc=None):
    r = env.run("once", task)
    assert "runtime error" not in r.stderr and "Sanitizer" not in r.stderr, r.stderr
    if expect_rc is not None:
        assert r.returncode == expect_rc, r.stdout[-3000:] + r.stderr
    ev = parse_lines(r.stdout)
    (start,) = [e for e in ev if e.get("event") == f"{task}_start"]
    return ev, start["correlation_id"]


def named(events, name):
    return [e for e in events if e.get("event") == name]


# ---- health_check: outage and recovery ----

def hc_config(env, key):
    env.write_config(f"""[ssh]
user = root
key_file = {key}
known_hosts = {env.dir / 'known_hosts'}
host_key_policy = accept-new
timeout = 5s

[task.health_check]
failure_threshold = 2
success_threshold = 1
check_timeout = 3s
""")


def add_servers(env, rows):
    now = time.time()
    for handle, port, status in rows:
        execute(env, "INSERT INTO servers (handle, ip, port, ssh_user, status, created_at,"
                " updated_at) VALUES (?, '127.0.0.1', ?, 'root', ?, ?, ?)",
                handle, port, status, now, now)


@needs_sshd
def test_health_check_outage_and_recovery(env, tmp_path):
    up = Sshd(tmp_path, name="up").start()
    down = Sshd(tmp_path, name="down", client_key=up.client_key)
    try:
        hc_config(env, up.client_key)
        once(env, "health_check", 0)  # creates the store (no servers)
        add_servers(env, [("web-1", up.port, "ready"), ("db-1", down.port, "in_use")])

        once(env, "health_check", 0)  # first failure: below the threshold
        assert notes(env) == []
        ev, cid_out = once(env, "health_check", 0)
        (opened,) = named(ev, "server_unhealthy_incident_created")
        rows = notes(env)
        assert [(n["kind"], n["level"]) for n in rows] == [("server_unreachable", "critical")]
        out = rows[0]
        assert out["correlation_id"] == cid_out
        assert out["title"] == "Server db-1 is unreachable"
        f = out["fields"]
        assert (f["server_handle"], f["ip"], f["previous_status"]) == ("db-1", "127.0.0.1", "in_use")
        assert f["incident_id"] == opened["incident_id"] and f["stage"] == "connect"
        assert f["failures"] == 2 and f["error"]
        assert f["error"] in out["body"]

        once(env, "health_check", 0)  # still down: no second notification
        assert len(notes(env)) == 1

        down.start()
        ev, cid_back = once(env, "health_check", 0)
        assert named(ev, "server_recovered")
        rows = notes(env)
        assert [(n["kind"], n["level"]) for n in rows] == [
            ("server_unreachable", "critical"), ("server_recovered", "info")]
        back = rows[1]
        assert back["correlation_id"] == cid_back != cid_out
        assert back["title"] == "Server db-1 recovered"
        f = back["fields"]
        assert (f["server_handle"], f["status"], f["incident_id"]) == (
            "db-1", "in_use", opened["incident_id"])
        assert f["incident_correlation_id"] == cid_out and f["outage_sec"] >= 0
        assert rows[0]["id"] < rows[1]["id"]
    finally:
        down.stop()
        up.stop()


@needs_sshd
def test_health_check_outbox_failure_leaves_no_half_state(env, tmp_path):
    up = Sshd(tmp_path, name="up")  # never started: the server is down
    hc_config(env, up.client_key)
    once(env, "health_check", 0)
    add_servers(env, [("db-1", up.port, "in_use")])
    for st in FAIL_OUTBOX:
        execute(env, st)
    once(env, "health_check", 0)
    ev, _ = once(env, "health_check")
    (failed,) = named(ev, "health_check_store_failed")
    assert "outbox unavailable" in failed["error"]
    assert not named(ev, "server_unhealthy_incident_created")
    # Neither the incident nor the status change nor a notification.
    assert env.sql("SELECT count(*) FROM incidents") == [(0,)]
    assert env.sql("SELECT status, previous_status FROM servers") == [("in_use", None)]
    assert notes(env) == []

    # The outbox works again: the next run opens the incident, with its row.
    for st in DROP_FAIL_OUTBOX:
        execute(env, st)
    ev, cid = once(env, "health_check", 0)
    assert named(ev, "server_unhealthy_incident_created")
    assert [(n["kind"], n["correlation_id"]) for n in notes(env)] == [("server_unreachable", cid)]
    assert env.sql("SELECT status FROM servers") == [("error",)]


# ---- server_sync from the inventory provider ----

INVENTORY = """
[web]
web1 ansible_host=127.0.0.11
web2 ansible_host=127.0.0.12

[spare]
spare1 ansible_host=127.0.0.99
"""

needs_inventory = pytest.mark.skipif(shutil.which("ansible-inventory") is None,
                                     reason="needs ansible-inventory")


def inventory_config(env, inv):
    env.write_config(f"""[provider.inventory]
file = {inv}
ghost_servers = spare1

[task.server_sync]
""")


@needs_inventory
def test_server_sync_discovered_and_missing(env):
    inv = env.dir / "inventory.ini"
    inv.write_text(INVENTORY)
    inventory_config(env, inv)
    ev, cid = once(env, "server_sync", 0)
    rows = notes(env)
    # Managed servers only (the ghost is not announced), in listing order.
    assert [(n["kind"], n["level"], n["fields"]["server_handle"]) for n in rows] == [
        ("server_discovered", "info", "web1"), ("server_discovered", "info", "web2")]
    assert {n["correlation_id"] for n in rows} == {cid}
    # an inventory's servers enter ready (issue 14), and without a provision
    # task nothing promises provisioning
    assert rows[0]["fields"] == {"server_handle": "web1", "ip": "127.0.0.11",
                                 "provider": "inventory", "status": "ready"}
    assert rows[0]["title"] == "New managed server web1 discovered"
    assert rows[0]["body"] == "Found in inventory at 127.0.0.11; status ready."

    # Unchanged: nothing new.
    once(env, "server_sync", 0)
    assert len(notes(env)) == 2

    # web2 and the ghost vanish: one server_missing, for the managed one.
    mark = last_id(env)
    inv.write_text(INVENTORY.replace("web2 ansible_host=127.0.0.12\n", "")
                   .replace("spare1 ansible_host=127.0.0.99\n", ""))
    ev, cid2 = once(env, "server_sync", 0)
    (missing,) = notes(env, mark)
    assert (missing["kind"], missing["level"], missing["correlation_id"]) == (
        "server_missing", "warning", cid2)
    assert missing["fields"] == {"server_handle": "web2", "ip": "127.0.0.12",
                                 "provider": "inventory", "previous_status": "ready"}
    assert env.sql("SELECT status FROM servers WHERE handle = 'web2'") == [("missing",)]


@needs_inventory
def test_server_sync_outbox_failure_rolls_back_the_listing(env):
    inv = env.dir / "inventory.ini"
    inv.write_text(INVENTORY)
    inventory_config(env, inv)
    assert env.run("services", "list").returncode == 0  # creates the store
    for st in FAIL_OUTBOX:
        execute(env, st)
    ev, _ = once(env, "server_sync", 1)
    assert named(ev, "server_sync_store_failed")
    assert env.sql("SELECT count(*) FROM servers") == [(0,)]
    assert notes(env) == []
    for st in DROP_FAIL_OUTBOX:
        execute(env, st)
    once(env, "server_sync", 0)
    assert [n["kind"] for n in notes(env)] == ["server_discovered"] * 2


# ---- github_sync: a project marked missing ----

def test_github_sync_project_missing(env):
    replay = Replay(org="acme", repos=5).start()
    try:
        tok = env.dir / "gh.token"
        tok.write_text("ghp_PRODUCERS_TEST_TOKEN\n")
        env.write_config(f"""[github]
api_url = {replay.url}
org = acme
token_file = {tok}
missing_threshold = 2
timeout = 10s

[task.github_sync]
""")
        once(env, "github_sync", 0)
        assert notes(env) == []
        gone = replay.repos.pop(2)
        replay.changed()
        once(env, "github_sync", 0)  # attempt 1 of 2: not yet
        assert notes(env) == []
        ev, cid = once(env, "github_sync", 0)
        assert named(ev, "project_marked_missing")
        (n,) = notes(env)
        assert (n["kind"], n["level"], n["correlation_id"]) == ("project_missing", "critical", cid)
        assert n["title"] == f"Project {gone['name']} is missing from GitHub"
        f = n["fields"]
        assert (f["project_name"], f["github_repo_id"], f["missing_count"]) == (
            gone["name"], gone["id"], 2)
        assert f["previous_status"] == "active"
        once(env, "github_sync", 0)  # already missing: no repeat
        assert len(notes(env)) == 1
    finally:
        replay.stop()


# ---- task_failing: once per streak ----

def test_task_failing_once_per_streak(env):
    flag = env.dir / "ok"
    env.write_config(f"""[task.flaky]
type = command
command = test -f {flag}
failure_alert_after = 3

[task.quiet]
type = command
command = false
""")
    cids = []
    for _ in range(4):  # F F F (alert) F (no repeat)
        cids.append(once(env, "flaky", 1)[1])
    rows = notes(env)
    assert [(n["kind"], n["level"]) for n in rows] == [("task_failing", "error")]
    n = rows[0]
    assert n["correlation_id"] == cids[2]
    assert n["title"] == "Task flaky failed 3 runs in a row"
    f = n["fields"]
    assert (f["task"], f["streak"], f["status"], f["error_type"]) == (
        "flaky", 3, "failed", "exit_status")
    assert f["run_id"] == env.sql("SELECT id FROM task_runs WHERE correlation_id = ?",
                                  cids[2])[0][0]

    flag.write_text("")  # a success ends the streak
    once(env, "flaky", 0)
    flag.unlink()
    for _ in range(3):  # a new streak: alerted again at its third failure
        cids.append(once(env, "flaky", 1)[1])
    rows = notes(env)
    assert [n["correlation_id"] for n in rows] == [cids[2], cids[6]]

    # failure_alert_after unset: never.
    for _ in range(3):
        once(env, "quiet", 1)
    assert len(notes(env)) == 2


def test_task_failing_counts_timeouts(env):
    env.write_config("""[task.slow]
type = command
command = sleep 30
timeout = 1s
kill_grace = 0
failure_alert_after = 2
""")
    cids = [once(env, "slow")[1] for _ in range(2)]
    assert env.sql("SELECT status FROM task_runs ORDER BY id") == [("timeout",), ("timeout",)]
    (n,) = notes(env)
    assert (n["kind"], n["correlation_id"]) == ("task_failing", cids[1])
    assert (n["fields"]["status"], n["fields"]["streak"]) == ("timeout", 2)


# ---- provisioning and recovery (ansible-playbook against the loopback sshd) ----

@needs_ansible
def test_force_rebuild_started_then_provisioning_failed(tmp_path):
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-rebuild", status="force_rebuild")
        h.exec_sql("UPDATE servers SET port = ? WHERE handle = 'vps-rebuild'", closed_port())
        ev, cid = once(h.env, "provision")
        assert named(ev, "provisioning_failed")
        rows = notes(h.env)
        assert [(n["kind"], n["level"]) for n in rows] == [
            ("force_rebuild_started", "warning"), ("provisioning_failed", "error")]
        assert {n["correlation_id"] for n in rows} == {cid}
        assert rows[0]["fields"] == {"server_handle": "vps-rebuild", "ip": "127.0.0.1"}
        assert rows[1]["fields"]["server_handle"] == "vps-rebuild"
        assert rows[1]["fields"]["error"].startswith("provision_access")
        assert h.env.sql("SELECT status FROM servers") == [("error",)]
        assert h.env.sql("SELECT type, correlation_id FROM incidents") == [
            ("provisioning_failed", cid)]
    finally:
        h.close()


@needs_ansible
def test_recovery_finished_with_failures(tmp_path):
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-42", status="in_use")
        for name in ("broken-a", "broken-b"):
            r = h.env.run("services", "add", "vps-42", name, "--repo",
                          f"file://{tmp_path}/repos/{name}.git", "--port", "1",
                          "--start", "true")
            assert r.returncode == 0, r.stderr
        h.open_incident("vps-42")
        r = h.env.run("recover", "vps-42")
        assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr
        ev = parse_lines(r.stdout)
        (start,) = named(ev, "recover_start")
        (n,) = notes(h.env)
        assert (n["kind"], n["level"], n["correlation_id"]) == (
            "recovery_finished", "warning", start["correlation_id"])
        assert n["title"] == "Recovery of vps-42 finished with failures"
        f = n["fields"]
        assert (f["server_handle"], f["succeeded"], f["failed"], f["services_count"]) == (
            "vps-42", 0, 2, 2)
        assert f["incidents"] == 1
        assert [e.split(":")[0] for e in f["errors"]] == ["broken-a", "broken-b"]
        assert "Succeeded 0, failed 2" in n["body"]
        assert h.env.sql("SELECT status FROM incidents") == [("failed",)]

        # Nothing to redeploy: a no-op (issue 14), nothing notified, the
        # incident left as it is.
        h.exec_sql("DELETE FROM services")
        r = h.env.run("recover", "vps-42")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        assert "nothing to redeploy" in r.stderr
        assert [(x["kind"], x["level"]) for x in notes(h.env)] == [
            ("recovery_finished", "warning")]
        assert h.env.sql("SELECT status FROM incidents") == [("failed",)]

        # One service that deploys: a success, level info.
        port = free_port()
        r = h.env.run("services", "add", "vps-42", "ok", "--repo", h.make_repo("ok", port),
                      "--port", str(port),
                      "--start", f"python3 -m http.server {port} --bind 127.0.0.1")
        assert r.returncode == 0, r.stderr
        r = h.env.run("recover", "vps-42")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        rows = notes(h.env)
        assert [(x["kind"], x["level"]) for x in rows] == [
            ("recovery_finished", "warning"), ("recovery_finished", "info")]
        assert rows[1]["title"] == "Recovery of vps-42 succeeded"
        assert rows[1]["fields"]["errors"] == []
        assert h.env.sql("SELECT status FROM incidents") == [("resolved",)]
        assert h.env.sql("SELECT status FROM servers") == [("in_use",)]
    finally:
        h.close()


@needs_ansible
def test_recovery_outbox_failure_keeps_incidents_open(tmp_path):
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-7", status="error")
        port = free_port()  # something to redeploy: without services recover is a no-op
        r = h.env.run("services", "add", "vps-7", "ok", "--repo", h.make_repo("ok", port),
                      "--port", str(port),
                      "--start", f"python3 -m http.server {port} --bind 127.0.0.1")
        assert r.returncode == 0, r.stderr
        h.open_incident("vps-7", previous=None)
        for st in FAIL_OUTBOX:
            h.exec_sql(st)
        r = h.env.run("recover", "vps-7")
        assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
        assert r.returncode == 1
        ev = parse_lines(r.stdout)
        # Reported once, by the run (issue 13: no recovery_store_failed first).
        assert named(ev, "recovery_store_failed") == []
        (failed,) = named(ev, "recover_failed")
        assert failed["error_type"] == "store"
        assert "outbox unavailable" in failed["error"]
        # The end was rolled back: the incident is still being recovered.
        assert h.env.sql("SELECT status, resolved_at FROM incidents") == [("recovering", None)]
        assert h.env.sql("SELECT status FROM servers") == [("error",)]
        assert notes(h.env) == []
    finally:
        h.close()
