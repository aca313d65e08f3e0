"""A server's lifecycle and the incidents an operator handles (issue 14,
docs/servers.md), with real sshd on loopback and a real Ansible inventory:
inventory servers enter ready and are health-checked with the default keys;
an outage opens an incident that the operator acknowledges (it stays open,
a failed recovery of it is not notified again) and that resolves when the
server answers, the server back to the status it had; an operator closes
another one by hand; the exit codes of `incidents ack|close`."""
import json
import shutil

import pytest

from conftest import parse_lines
from sshd import Sshd, have_sshd

pytestmark = [
    pytest.mark.skipif(not have_sshd(), reason="needs root and OpenSSH sshd/ssh-keygen"),
    pytest.mark.skipif(shutil.which("ansible-inventory") is None, reason="needs ansible"),
]


def named(events, name):
    return [e for e in events if e.get("event") == name]


def once(env, task, rc=0):
    r = env.run("once", task)
    assert r.returncode == rc, r.stdout[-3000:] + r.stderr
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return parse_lines(r.stdout)


def incidents_json(env, *args):
    r = env.run("incidents", "--json", *args)
    assert r.returncode == 0, r.stderr
    return parse_lines(r.stdout)


def statuses(env):
    return dict(env.sql("SELECT handle, status FROM servers"))


def kinds(env):
    return [k for (k,) in env.sql("SELECT kind FROM notifications ORDER BY id")]


@pytest.fixture
def fleet(env, tmp_path):
    """web1, web2 on a running sshd; db1 on one that is not running yet."""
    up = Sshd(tmp_path, name="up", nports=2).start()
    down = Sshd(tmp_path, name="down", nports=1, client_key=up.client_key)
    inv = env.dir / "inventory.ini"
    inv.write_text(f"""[web]
web1 ansible_host=127.0.0.1 ansible_port={up.ports[0]} ansible_user=root
web2 ansible_host=127.0.0.1 ansible_port={up.ports[1]} ansible_user=root

[db]
db1 ansible_host=127.0.0.1 ansible_port={down.ports[0]} ansible_user=root
""")
    env.write_config(f"""[ssh]
user = root
key_file = {up.client_key}
known_hosts = {env.dir / 'known_hosts'}
host_key_policy = accept-new
timeout = 5s

[provider.inventory]
file = {inv}

[task.server_sync]

[task.health_check]
""")
    yield up, down
    down.stop()
    up.stop()


def test_inventory_servers_are_checked_from_the_start(env, fleet):
    r = env.run("check-config")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr

    ev = once(env, "server_sync")
    assert statuses(env) == {"web1": "ready", "web2": "ready", "db1": "ready"}
    assert not named(ev, "provisioning_trigger_published")
    bodies = [b for (b,) in env.sql("SELECT body FROM notifications"
                                    " WHERE kind = 'server_discovered'")]
    assert len(bodies) == 3 and not any("provisioning next" in b for b in bodies)

    # Default health_check keys: the three are checked (it used to skip
    # with no_servers while they waited in pending_setup).
    ev = once(env, "health_check")
    checks = {e["server_handle"]: e["status"] for e in named(ev, "server_health_check")}
    assert checks == {"web1": "healthy", "web2": "healthy", "db1": "unhealthy"}
    assert not named(ev, "health_check_skipped")


def open_db1_incident(env):
    """Two failed checks (failure_threshold 2): db1's incident, its id."""
    once(env, "health_check")
    ev = once(env, "health_check")
    (created,) = named(ev, "server_unhealthy_incident_created")
    assert created["server_handle"] == "db1"
    assert statuses(env)["db1"] == "error"
    return created["incident_id"], created["correlation_id"]


def test_ack_then_resolved_by_health(env, fleet):
    _, down = fleet
    once(env, "server_sync")
    env.run("services", "add", "db1", "pg", "--repo", "file:///nonexistent.git", "--port", "1",
            "--start", "true")
    con = env.connect()
    with con:  # db1 was in use before the outage: that is what comes back
        con.execute("UPDATE servers SET status = 'in_use' WHERE handle = 'db1'")
    con.close()
    iid, cid = open_db1_incident(env)
    assert kinds(env).count("server_unreachable") == 1

    (row,) = incidents_json(env, "--open")
    assert (row["incident_id"], row["acknowledged"], row["acknowledged_by"]) == (iid, False, None)
    table = env.run("incidents").stdout.splitlines()
    assert table[0].split()[:5] == ["ID", "SERVER", "TYPE", "STATUS", "ACK"]

    r = env.run("incidents", "ack", str(iid), "--reason", "disk swap, back at noon")
    assert r.returncode == 0, r.stderr
    (ack,) = named(parse_lines(r.stdout), "incident_acknowledged")
    assert (ack["incident_id"], ack["server_handle"], ack["incident_type"]) == (
        iid, "db1", "server_unreachable")
    assert ack["acknowledged_by"] == "root" and ack["reason"] == "disk swap, back at noon"
    assert ack["correlation_id"] == cid
    # the incident's history, acknowledgement included
    trace = [e["event"] for e in parse_lines(env.run("trace", cid).stdout)]
    assert "server_unhealthy_incident_created" in trace and "incident_acknowledged" in trace

    (row,) = incidents_json(env, "--open")  # still open
    assert (row["status"], row["acknowledged"], row["acknowledged_by"], row["ack_reason"]) == (
        "detected", True, "root", "disk swap, back at noon")
    line = [l for l in env.run("incidents").stdout.splitlines() if l.split()[0] == str(iid)][0]
    assert line.split()[4] == "root"

    # Acknowledging again is fine and keeps the first acknowledgement.
    r = env.run("incidents", "ack", str(iid))
    assert r.returncode == 0, r.stderr
    assert named(parse_lines(r.stdout), "incident_acknowledged")[0]["already"] is True

    # A failed recovery of the acknowledged incident: failed, still open,
    # and no further notification about it.
    before = kinds(env)
    r = env.run("recover", "db1")
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr
    (row,) = incidents_json(env, "--open")
    assert (row["incident_id"], row["status"]) == (iid, "failed")
    assert kinds(env) == before
    once(env, "health_check")  # still down: nothing new either
    assert kinds(env) == before

    # The server answers again: resolved (recovered), its status before
    # the outage back, and that is told.
    down.start()
    ev = once(env, "health_check")
    (res,) = named(ev, "incident_resolved")
    assert (res["incident_id"], res["resolution"]) == (iid, "recovered")
    assert statuses(env)["db1"] == "in_use"
    assert env.sql("SELECT status, resolution FROM incidents") == [("resolved", "recovered")]
    assert kinds(env)[len(before):] == ["server_recovered"]
    assert incidents_json(env, "--open") == []


def test_close_by_the_operator(env, fleet):
    once(env, "server_sync")
    iid, cid = open_db1_incident(env)
    r = env.run("incidents", "close", str(iid), "--reason", "db1 is being replaced")
    assert r.returncode == 0, r.stderr
    (closed,) = named(parse_lines(r.stdout), "incident_closed")
    assert (closed["incident_id"], closed["server_handle"], closed["status"]) == (
        iid, "db1", "ready")
    assert closed["reason"] == "db1 is being replaced" and closed["closed_by"] == "root"
    assert closed["correlation_id"] == cid
    assert env.sql("SELECT status, resolution, resolution_reason, resolved_at IS NOT NULL"
                   " FROM incidents") == [("resolved", "closed", "db1 is being replaced", 1)]
    assert env.sql("SELECT status, consecutive_failures FROM servers WHERE handle = 'db1'") == [
        ("ready", 0)]
    (row,) = incidents_json(env)
    assert (row["resolution"], row["resolution_reason"]) == ("closed", "db1 is being replaced")
    st = json.loads(env.run("status", "--json").stdout.splitlines()[-1])
    assert st["incidents_open"] == 0

    # Still down: a new outage needs failure_threshold new failures.
    ev = once(env, "health_check")
    assert not named(ev, "server_unhealthy_incident_created")
    ev = once(env, "health_check")
    assert len(named(ev, "server_unhealthy_incident_created")) == 1


def test_exit_codes(env, fleet):
    once(env, "server_sync")
    iid, _ = open_db1_incident(env)
    r = env.run("incidents", "ack", "9999")
    assert r.returncode == 1 and "no incident 9999" in r.stderr, r.stderr
    r = env.run("incidents", "close", "9999", "--reason", "x")
    assert r.returncode == 1 and "no incident 9999" in r.stderr, r.stderr
    for args in (["ack"], ["ack", "abc"], ["ack", "0"], ["ack", str(iid), "--reason"],
                 ["close", str(iid)], ["close", str(iid), "--reason", ""],
                 ["ack", str(iid), "--bogus"], ["close"]):
        r = env.run("incidents", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "incidents" in r.stderr, r.stderr
    assert env.sql("SELECT status, acknowledged_at FROM incidents") == [("detected", None)]
    r = env.run("incidents", "close", str(iid), "--reason", "done")
    assert r.returncode == 0, r.stderr
    for args in (["close", str(iid), "--reason", "again"], ["ack", str(iid)]):
        r = env.run("incidents", *args)
        assert r.returncode == 1 and "not open" in r.stderr, (args, r.stderr)
