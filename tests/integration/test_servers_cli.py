"""`fleetkeeper servers` and maintenance windows (issue 14): the operator's
view of the fleet, operator transitions recorded as events, maintenance that
holds incidents and notifications back, and opens the outage at its end."""
import json
import time

import pytest

from conftest import parse_lines
from sshd import Sshd, have_sshd

TASKS = """
[task.hello]
type = command
schedule = @every 1h
command = echo hello
"""


def add_servers(env, rows):
    con = env.connect()
    now = time.time()
    with con:
        for handle, ip, port, status in rows:
            con.execute("INSERT INTO servers (handle, ip, port, ssh_user, status, created_at,"
                        " updated_at) VALUES (?, ?, ?, 'root', ?, ?, ?)",
                        (handle, ip, port, status, now, now))
    con.close()


def listing(env, *args):
    r = env.run("servers", *args, "--json")
    assert r.returncode == 0, r.stderr
    return {s["handle"]: s for s in parse_lines(r.stdout)}


def stored_events(env, name):
    return [json.loads(line) for (line,) in env.sql("SELECT line FROM events WHERE event = ?", name)]


@pytest.fixture
def fleet_env(env):
    env.write_config(TASKS)
    assert env.run("once", "hello").returncode == 0  # the schema
    add_servers(env, [("web-1", "127.0.0.1", 2201, "ready"), ("web-2", "127.0.0.1", 2202, "in_use")])
    return env


def test_servers_before_any_store(env):
    env.write_config(TASKS)
    r = env.run("servers")
    assert r.returncode == 0 and "no servers yet" in r.stdout, r.stdout + r.stderr


def test_listing_and_show(fleet_env):
    env = fleet_env
    r = env.run("servers")
    assert r.returncode == 0, r.stderr
    assert "web-1" in r.stdout and "127.0.0.1:2201" in r.stdout and "unchecked" in r.stdout
    rows = listing(env)
    assert set(rows) == {"web-1", "web-2"}
    assert rows["web-2"]["status"] == "in_use" and rows["web-2"]["health"] == "unchecked"
    assert rows["web-1"]["maintenance_until"] is None and rows["web-1"]["open_incident"] is None
    assert set(listing(env, "show", "web-1")) == {"web-1"}
    r = env.run("servers", "show", "nope")
    assert r.returncode == 1 and "no server 'nope'" in r.stderr


def test_set_status_is_recorded_with_who_and_why(fleet_env):
    env = fleet_env
    r = env.run("servers", "set-status", "web-1", "reserved", "--reason", "kept for the migration")
    assert r.returncode == 0, r.stderr
    assert "ready -> reserved" in r.stdout and "fleetkeeper trace op_servers_" in r.stdout
    assert env.sql("SELECT status FROM servers WHERE handle = 'web-1'") == [("reserved",)]
    [ev] = stored_events(env, "server_status_set")
    assert ev["previous_status"] == "ready" and ev["status"] == "reserved"
    assert ev["reason"] == "kept for the migration" and ev["by"]
    cid = r.stdout.split("fleetkeeper trace ")[1].split(")")[0]
    assert json.loads(env.run("trace", cid).stdout.splitlines()[0])["event"] == "server_status_set"


@pytest.mark.parametrize("args", [
    ["set-status", "web-1", "sleeping", "--reason", "x"],
    ["set-status", "web-1", "ready"],
    ["set-status", "web-1", "ready", "--reason", ""],
    ["frobnicate"],
    ["show"],
    ["maintenance", "web-1"],
    ["maintenance", "web-1", "--for", "soon"],
    ["maintenance", "web-1", "--for", "10s"],
    ["maintenance", "web-1", "--for", "1h", "--from", "tomorrow"],
    ["maintenance", "web-1", "--for", "1h", "--end"],
])
def test_usage_errors_change_nothing(fleet_env, args):
    env = fleet_env
    before = env.sql("SELECT handle, status FROM servers ORDER BY handle")
    r = env.run("servers", *args)
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    assert r.stderr.startswith("fleetkeeper: servers"), r.stderr
    assert env.sql("SELECT handle, status FROM servers ORDER BY handle") == before
    assert env.sql("SELECT count(*) FROM maintenance_windows") == [(0,)]


def test_unknown_server_is_a_failure_not_a_usage_error(fleet_env):
    r = fleet_env.run("servers", "maintenance", "nope", "--for", "1h")
    assert r.returncode == 1 and "no server 'nope'" in r.stderr


def test_maintenance_now_scheduled_and_ended(fleet_env):
    env = fleet_env
    r = env.run("servers", "maintenance", "web-1", "--for", "2h", "--reason", "kernel")
    assert r.returncode == 0, r.stderr
    until = listing(env)["web-1"]["maintenance_until"]
    assert until and abs(until - (time.time() + 7200)) < 60
    [ev] = stored_events(env, "maintenance_started")
    assert ev["server_handle"] == "web-1" and ev["reason"] == "kernel"
    r = env.run("servers", "maintenance", "web-2", "--for", "1h", "--from", "2099-01-01T00:00:00Z")
    assert r.returncode == 0 and "scheduled" in r.stdout, r.stdout + r.stderr
    assert listing(env)["web-2"]["maintenance_until"] is None
    assert stored_events(env, "maintenance_scheduled")
    r = env.run("servers", "maintenance", "web-1", "--end")
    assert r.returncode == 0 and "ended" in r.stdout
    assert listing(env)["web-1"]["maintenance_until"] is None
    assert stored_events(env, "maintenance_ended")
    r = env.run("servers", "maintenance", "web-1", "--end")
    assert r.returncode == 0 and "no maintenance window" in r.stdout


def test_recurring_window_from_the_configuration(env):
    env.write_config(TASKS + """
[maintenance.always]
servers = web-*
schedule = * * * * *
duration = 5m
reason = rolling upgrades
""")
    assert env.run("once", "hello").returncode == 0
    add_servers(env, [("web-1", "127.0.0.1", 2201, "ready"), ("db-1", "127.0.0.1", 2202, "ready")])
    rows = listing(env)
    assert rows["web-1"]["maintenance_source"] == "rule always"
    assert rows["db-1"]["maintenance_until"] is None


@pytest.mark.parametrize("section, message", [
    ("[maintenance.x]\nschedule = 0 2 * * *\nduration = 1h\n", "servers is required"),
    ("[maintenance.x]\nservers = a\nduration = 1h\n", "schedule is required"),
    ("[maintenance.x]\nservers = a\nschedule = @every 1h\nduration = 1h\n", "cron"),
    ("[maintenance.x]\nservers = a\nschedule = 0 2 * * *\n", "duration is required"),
    ("[maintenance.x]\nservers = a\nschedule = 0 2 * * *\nduration = 1h\ncolour = red\n", "colour"),
    ("[maintenence.x]\nservers = a\n", "did you mean [maintenance.x]"),
])
def test_bad_maintenance_sections(env, section, message):
    env.write_config(TASKS + section)
    r = env.run("check-config")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert str(env.conf) + ":" in r.stderr


def test_forget_keeps_the_incidents(fleet_env):
    env = fleet_env
    con = env.connect()
    with con:
        con.execute("INSERT INTO incidents (server_id, type, status, detected_at) VALUES"
                    " ((SELECT id FROM servers WHERE handle = 'web-1'), 'server_unreachable',"
                    " 'resolved', 1)")
    con.close()
    r = env.run("servers", "forget", "web-1")
    assert r.returncode == 0, r.stderr
    assert set(listing(env)) == {"web-2"}
    assert env.sql("SELECT server_id FROM incidents") == [(None,)]
    assert stored_events(env, "server_forgotten")[0]["server_handle"] == "web-1"


# ---- maintenance holds incidents back, against real sshd ----

needs_sshd = pytest.mark.skipif(not have_sshd(), reason="needs root and OpenSSH sshd/ssh-keygen")


@needs_sshd
def test_maintenance_holds_the_incident_and_its_end_opens_it(env, tmp_path):
    up = Sshd(tmp_path, name="up", nports=1).start()
    down = Sshd(tmp_path, name="down", nports=1, client_key=up.client_key)  # never started
    try:
        env.write_config(f"""[ssh]
user = root
key_file = {up.client_key}
known_hosts = {env.dir / 'known_hosts'}
host_key_policy = accept-new
timeout = 5s

[task.health_check]
failure_threshold = 2
success_threshold = 1
check_timeout = 3s
""")
        assert env.run("once", "health_check").returncode == 0
        add_servers(env, [("web-1", "127.0.0.1", up.port, "ready"),
                          ("db-1", "127.0.0.1", down.ports[0], "ready")])
        assert env.run("servers", "maintenance", "db-1", "--for", "1h").returncode == 0
        for _ in range(3):
            r = env.run("once", "health_check")
            ev = parse_lines(r.stdout)
        held = [e for e in ev if e["event"] == "health_transition_held"]
        assert held and held[0]["server_handle"] == "db-1", [e["event"] for e in ev]
        assert env.sql("SELECT count(*) FROM incidents") == [(0,)]
        assert env.sql("SELECT count(*) FROM notifications") == [(0,)]
        complete = [e for e in ev if e["event"] == "health_check_complete"][0]
        assert complete["servers_in_maintenance"] == 1
        assert env.sql("SELECT consecutive_failures FROM servers WHERE handle = 'db-1'")[0][0] >= 3

        assert env.run("servers", "maintenance", "db-1", "--end").returncode == 0
        r = env.run("once", "health_check")
        ev = parse_lines(r.stdout)
        created = [e for e in ev if e["event"] == "server_unhealthy_incident_created"]
        assert created and created[0]["server_handle"] == "db-1", [e["event"] for e in ev]
        assert env.sql("SELECT s.handle, i.type FROM incidents i JOIN servers s"
                       " ON s.id = i.server_id") == [("db-1", "server_unreachable")]
    finally:
        down.stop()
        up.stop()


def test_listing_survives_a_broken_config_changes_do_not(fleet_env):
    env = fleet_env
    env.conf.write_text(env.conf.read_text() + "\n[task.broken]\ntype = nonsense\n")
    r = env.run("servers")
    assert r.returncode == 0 and "web-1" in r.stdout, r.stdout + r.stderr
    assert "warning:" in r.stderr and str(env.conf) in r.stderr
    r = env.run("servers", "set-status", "web-1", "reserved", "--reason", "x")
    assert r.returncode == 2 and str(env.conf) in r.stderr
    assert env.sql("SELECT status FROM servers WHERE handle = 'web-1'") == [("ready",)]
