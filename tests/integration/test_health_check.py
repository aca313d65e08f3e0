"""The health_check task against real sshd instances on loopback (issue 4):
debounced incidents, restore on recovery, no duplicates, cancellation."""
import json
import os
import time

import pytest

from conftest import parse_lines
from sshd import Sshd, SilentListener, have_sshd

pytestmark = pytest.mark.skipif(not have_sshd(), reason="needs root and OpenSSH sshd/ssh-keygen")


def configure(env, key, task_extra="", check_timeout="3s", failure_threshold=2, concurrency="8"):
    env.write_config(
        f"""[ssh]
user = root
key_file = {key}
known_hosts = {env.dir / 'known_hosts'}
host_key_policy = accept-new
timeout = 5s

[task.health_check]
failure_threshold = {failure_threshold}
success_threshold = 1
concurrency = {concurrency}
check_timeout = {check_timeout}
{task_extra}
""")


def add_servers(env, rows):
    """rows: (handle, ip, port, status). The schema exists after a first once."""
    con = env.connect()
    now = time.time()
    with con:
        for handle, ip, port, status in rows:
            con.execute("INSERT INTO servers (handle, ip, port, ssh_user, status, created_at, updated_at)"
                        " VALUES (?, ?, ?, 'root', ?, ?, ?)", (handle, ip, port, status, now, now))
    con.close()


def once(env):
    r = env.run("once", "health_check")
    return r, parse_lines(r.stdout)


def named(events, name):
    return [e for e in events if e.get("event") == name]


def incidents(env):
    return env.sql("SELECT s.handle, i.type, i.status, i.resolved_at IS NOT NULL, i.correlation_id"
                   " FROM incidents i JOIN servers s ON s.id = i.server_id ORDER BY i.id")


def statuses(env):
    return dict(env.sql("SELECT handle, status FROM servers"))


@pytest.fixture
def fleet(env, tmp_path):
    """Three servers on a running sshd, two on an sshd that is not running yet."""
    up = Sshd(tmp_path, name="up", nports=1).start()
    down = Sshd(tmp_path, name="down", nports=2, client_key=up.client_key)
    configure(env, up.client_key)
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert named(ev, "health_check_skipped")[0]["reason"] == "no_servers"
    add_servers(env, [("web-1", "127.0.0.1", up.port, "ready"),
                      ("web-2", "127.0.0.1", up.port, "in_use"),
                      ("web-3", "127.0.0.1", up.port, "ready"),
                      ("db-1", "127.0.0.1", down.ports[0], "in_use"),
                      ("db-2", "127.0.0.1", down.ports[1], "ready"),
                      ("spare", "127.0.0.1", up.port, "maintenance")])
    yield up, down
    down.stop()
    up.stop()


def test_debounced_incidents_restore_and_no_duplicates(env, fleet):
    up, down = fleet

    # run 1: two failures, below the threshold of 2: no incident yet
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    checks = {e["server_handle"]: e for e in named(ev, "server_health_check")}
    assert set(checks) == {"web-1", "web-2", "web-3", "db-1", "db-2"}  # not the maintenance one
    assert checks["web-1"]["status"] == "healthy" and checks["web-1"]["stage"] == "exec"
    assert checks["db-1"]["status"] == "unhealthy" and checks["db-1"]["stage"] == "connect"
    assert checks["db-1"]["error"] and checks["web-1"]["error"] is None
    done = named(ev, "health_check_complete")[0]
    assert (done["healthy_count"], done["unhealthy_count"]) == (3, 2)
    assert named(ev, "health_check_start")[0]["servers_count"] == 5
    assert incidents(env) == []
    assert named(ev, "server_unhealthy_incident_created") == []
    rows = env.sql("SELECT handle, consecutive_failures, last_health_check IS NOT NULL,"
                   " response_time_ms IS NOT NULL FROM servers WHERE handle IN ('web-1', 'db-1')"
                   " ORDER BY handle")
    assert rows == [("db-1", 1, 1, 0), ("web-1", 0, 1, 1)]

    # run 2: the threshold is reached: exactly two incidents
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    created = named(ev, "server_unhealthy_incident_created")
    assert sorted((e["server_handle"], e["previous_status"]) for e in created) == [
        ("db-1", "in_use"), ("db-2", "ready")]
    assert all(e["incident_id"] > 0 for e in created)
    assert named(ev, "incident_recovery_requested") == []  # auto_recover is off
    inc = incidents(env)
    assert [(h, t, s, res) for h, t, s, res, _ in inc] == [
        ("db-1", "server_unreachable", "detected", 0), ("db-2", "server_unreachable", "detected", 0)]
    cid = named(ev, "health_check_start")[0]["correlation_id"]
    assert all(c == cid for *_, c in inc)
    st = statuses(env)
    assert (st["db-1"], st["db-2"], st["web-1"]) == ("error", "error", "ready")
    assert named(ev, "health_check_complete")[0]["incidents_created"] == 2

    # run 3: still down: checked (status error), but no duplicate incident
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert {e["server_handle"] for e in named(ev, "server_health_check")} >= {"db-1", "db-2"}
    assert named(ev, "server_unhealthy_incident_created") == []
    assert len(incidents(env)) == 2

    # they come back: previous statuses restored, incidents resolved
    down.start()
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    rec = {e["server_handle"]: e for e in named(ev, "server_recovered")}
    assert set(rec) == {"db-1", "db-2"}
    assert rec["db-1"]["status"] == "in_use" and rec["db-2"]["status"] == "ready"
    assert {e["incident_id"] for e in rec.values()} == {e["incident_id"] for e in created}
    st = statuses(env)
    assert (st["db-1"], st["db-2"], st["spare"]) == ("in_use", "ready", "maintenance")
    assert [(h, s, res) for h, _, s, res, _ in incidents(env)] == [
        ("db-1", "resolved", 1), ("db-2", "resolved", 1)]
    assert env.sql("SELECT count(*) FROM servers WHERE previous_status IS NOT NULL") == [(0,)]

    # a new outage is a new incident
    down.stop()
    for _ in range(2):
        r, ev = once(env)
    assert len(named(ev, "server_unhealthy_incident_created")) == 2
    assert len(incidents(env)) == 4
    assert env.sql("SELECT count(*) FROM incidents WHERE resolved_at IS NULL") == [(2,)]


def test_auto_recover_requests_recovery(env, fleet, tmp_path):
    up, _ = fleet
    configure(env, up.client_key, task_extra="auto_recover = true", failure_threshold=1)
    for handle in ("db-1", "db-2"):  # a server without services is a no-op (recovery.c)
        r = env.run("services", "add", handle, "app", "--repo", "file:///nonexistent.git")
        assert r.returncode == 0, r.stderr
    r, ev = once(env)
    # No daemon: both recoveries run inline and fail (the servers are down
    # and not reprovisioned), and so does the run, once every server was checked.
    assert r.returncode == 1, r.stderr
    (failed,) = named(ev, "health_check_failed")
    assert failed["error_type"] == "recovery_failed"
    assert failed["error"].endswith("(and 1 more recoveries failed)")
    created = named(ev, "server_unhealthy_incident_created")
    req = named(ev, "incident_recovery_requested")
    assert len(created) == 2
    assert sorted((e["incident_id"], e["server_handle"]) for e in req) == sorted(
        (e["incident_id"], e["server_handle"]) for e in created)


def test_statuses_key_selects_servers(env, fleet):
    up, _ = fleet
    configure(env, up.client_key, task_extra="statuses = maintenance")
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert [e["server_handle"] for e in named(ev, "server_health_check")] == ["spare"]


def test_bad_keys_are_configuration_errors(env, tmp_path):
    for extra in ("concurrency = 0", "statuses = up", "failure_threshold = x", "check_timeout = -1",
                  "bogus = 1"):
        configure(env, tmp_path / "k", task_extra=extra)
        r = env.run("check-config")
        assert r.returncode == 2, (extra, r.stdout)
        assert str(env.conf) in r.stderr


def test_run_timeout_cancels_checks_promptly(env, tmp_path):
    up = Sshd(tmp_path, name="up").start()
    silent = [SilentListener() for _ in range(3)]
    try:
        configure(env, up.client_key, task_extra="timeout = 1s", check_timeout="20s")
        once(env)
        add_servers(env, [(f"s{i}", "127.0.0.1", s.port, "ready") for i, s in enumerate(silent)])
        t0 = time.monotonic()
        r, ev = once(env)
        wall = time.monotonic() - t0
        assert r.returncode == 1
        assert wall < 5, wall
        runs = env.sql("SELECT status FROM task_runs WHERE task = 'health_check' ORDER BY id DESC LIMIT 1")
        assert runs == [("timeout",)]
        # cancelled checks are not failures
        assert env.sql("SELECT max(consecutive_failures) FROM servers") == [(0,)]
    finally:
        for s in silent:
            s.close()
        up.stop()


# ---- issue 14: one definition of open, provisioning_failed resolved by health ----

def open_incidents_json(env):
    r = env.run("incidents", "--open", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_failed_recovery_stays_open_everywhere(env, fleet):
    """After a failed recovery the incident is failed, and still open for
    `incidents --open`, `status` and the metric (it used to drop out)."""
    up, _ = fleet
    configure(env, up.client_key, task_extra="auto_recover = true", failure_threshold=1)
    for handle in ("db-1", "db-2"):  # something to redeploy, on a server that is down
        r = env.run("services", "add", handle, "app", "--repo", "file:///nonexistent.git",
                    "--port", "1", "--start", "true")
        assert r.returncode == 0, r.stderr
    r, ev = once(env)
    assert r.returncode == 1
    assert sorted(s for (s,) in env.sql("SELECT status FROM incidents")) == ["failed", "failed"]
    listed = open_incidents_json(env)
    assert sorted((i["server_handle"], i["status"]) for i in listed) == [
        ("db-1", "failed"), ("db-2", "failed")]
    assert all(i["resolution"] is None and i["acknowledged"] is False for i in listed)
    st = env.run("status", "--json")
    assert st.returncode == 0, st.stderr
    assert '"incidents_open":2' in st.stdout.replace(" ", ""), st.stdout


def test_provisioning_failed_resolved_when_healthy(env, fleet):
    """A server in error with a provisioning_failed incident is checked; when
    it passes, the incident resolves (resolution recovered) and the server is
    ready. It used to stay open forever, the server never checked."""
    add_servers(env, [("fixed", "127.0.0.1", fleet[0].port, "error")])
    con = env.connect()
    with con:
        con.execute("INSERT INTO incidents (server_id, type, status, detected_at, details)"
                    " SELECT id, 'provisioning_failed', 'detected', 1, '{\"error\":\"x\"}'"
                    " FROM servers WHERE handle = 'fixed'")
    con.close()
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert "fixed" in {e["server_handle"] for e in named(ev, "server_health_check")}
    (res,) = [e for e in named(ev, "incident_resolved") if e["server_handle"] == "fixed"]
    assert (res["incident_type"], res["resolution"]) == ("provisioning_failed", "recovered")
    assert env.sql("SELECT status, resolution, resolved_at IS NOT NULL FROM incidents"
                   " WHERE type = 'provisioning_failed'") == [("resolved", "recovered", 1)]
    assert statuses(env)["fixed"] == "ready"
    (fields,) = env.sql("SELECT fields FROM notifications WHERE kind = 'server_recovered'")[0]
    assert json.loads(fields)["incident_type"] == "provisioning_failed"


def test_provisioning_failed_unreachable_opens_no_second_incident(env, fleet):
    _, down = fleet
    add_servers(env, [("broken", "127.0.0.1", down.ports[0], "error")])
    con = env.connect()
    with con:
        con.execute("DELETE FROM servers WHERE handle NOT IN ('broken')")
        con.execute("INSERT INTO incidents (server_id, type, status, detected_at)"
                    " SELECT id, 'provisioning_failed', 'detected', 1 FROM servers")
    con.close()
    for _ in range(3):
        r, ev = once(env)
        assert r.returncode == 0, r.stderr
        assert named(ev, "server_health_check")[0]["status"] == "unhealthy"
    assert env.sql("SELECT type, status FROM incidents") == [("provisioning_failed", "detected")]


# ---- issue 16: what is stored per check, and how a run reports ----

def stored_checks(env, handle=None):
    """The server_health_check events in the store (server_handle, status)."""
    rows = [json.loads(line) for (line,) in env.sql(
        "SELECT line FROM events WHERE event = 'server_health_check' ORDER BY id")]
    return [(e["server_handle"], e["status"]) for e in rows
            if handle is None or e["server_handle"] == handle]


def history(env, handle):
    return env.sql("SELECT h.checks, h.failures, h.samples FROM health_history h"
                   " JOIN servers s ON s.id = h.server_id WHERE s.handle = ? ORDER BY h.hour", handle)


def wait_stored(env, pred):
    """The CLI's event writer commits before it exits; poll anyway."""
    return env.wait_sql("SELECT count(*) FROM events WHERE event = 'health_check_complete'",
                        pred)


def test_healthy_checks_are_history_failures_are_events(env, fleet):
    _, down = fleet
    for run in range(3):
        r, ev = once(env)
        assert r.returncode == 0, r.stderr
        # log_each_result = all (the default): every result is printed
        assert {e["server_handle"] for e in named(ev, "server_health_check")} == {
            "web-1", "web-2", "web-3", "db-1", "db-2"}
    wait_stored(env, lambda rows: rows[0][0] == 3)
    # healthy results: history rows only, never events
    assert stored_checks(env, "web-1") == []
    rows = history(env, "web-1")
    assert sum(c for c, _, _ in rows) == 3 and sum(f for _, f, _ in rows) == 0
    assert all(s.count(";") == c for c, _, s in rows), rows
    # db-1: run 1 (debouncing) and run 2 (the threshold) are events; run 3,
    # the same failure of a server with an open incident, is history only
    assert stored_checks(env, "db-1") == [("db-1", "unhealthy")] * 2
    rows = history(env, "db-1")
    assert sum(c for c, _, _ in rows) == 3 and sum(f for _, f, _ in rows) == 3
    assert all(":cF" in s for _, _, s in rows), rows  # connect stage, connect_refused
    assert env.sql("SELECT count(*) FROM events WHERE event = 'server_unhealthy_incident_created'"
                   ) == [(2,)]
    # `servers show` reads the history back: availability and response times
    r = env.run("servers", "show", "web-1", "--json")
    assert r.returncode == 0, r.stderr
    day = json.loads(r.stdout)["history"]["24h"]
    assert (day["checks"], day["failures"], day["availability"]) == (3, 0, 1.0), day
    assert 0 < day["response_min_ms"] <= day["response_avg_ms"] <= day["response_max_ms"], day
    r = env.run("servers", "show", "db-1", "--json")
    day = json.loads(r.stdout)["history"]["30d"]
    assert (day["checks"], day["failures"], day["availability"]) == (3, 3, 0.0), day
    assert "response_avg_ms" not in day  # no healthy check to average
    r = env.run("servers", "show", "web-1")
    assert r.returncode == 0, r.stderr
    assert "AVAILABILITY" in r.stdout and "100.000%" in r.stdout, r.stdout
    # the first passed check after failures is an event again
    down.start()
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    wait_stored(env, lambda rows: rows[0][0] == 4)
    assert stored_checks(env, "db-1")[-1] == ("db-1", "healthy")
    assert env.sql("SELECT count(*) FROM events WHERE event = 'server_recovered'") == [(2,)]
    r, ev = once(env)
    wait_stored(env, lambda rows: rows[0][0] == 5)
    assert len(stored_checks(env, "db-1")) == 3  # steady healthy: no new event


def test_log_each_result_filters_stdout(env, fleet):
    up, _ = fleet
    for _ in range(2):  # db-1 and db-2 reach the threshold: incidents open
        r, ev = once(env)
        assert r.returncode == 0, r.stderr
    configure(env, up.client_key, task_extra="log_each_result = changes")
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert named(ev, "server_health_check") == []  # nothing new
    assert named(ev, "health_check_complete")[0]["unhealthy_count"] == 2
    configure(env, up.client_key, task_extra="log_each_result = failures")
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert sorted(e["server_handle"] for e in named(ev, "server_health_check")) == ["db-1", "db-2"]
    wait_stored(env, lambda rows: rows[0][0] == 4)
    assert len(stored_checks(env, "db-1")) == 2  # printed, still not stored again
    # a changed failure is an event again, printed with changes too
    configure(env, up.client_key, task_extra="log_each_result = changes")
    con = env.connect()
    with con:
        con.execute("UPDATE servers SET ip = '127.0.0.1', port = ? WHERE handle = 'db-1'", (up.port,))
        con.execute("UPDATE servers SET ssh_user = 'nosuchuser' WHERE handle = 'db-1'")
    con.close()
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    (line,) = named(ev, "server_health_check")
    assert (line["server_handle"], line["stage"]) == ("db-1", "auth")
    wait_stored(env, lambda rows: rows[0][0] == 5)
    assert stored_checks(env, "db-1")[-1] == ("db-1", "unhealthy")
    assert len(stored_checks(env, "db-1")) == 3


def test_complete_reports_cpu_and_start_the_effective_concurrency(env, fleet):
    up, _ = fleet
    configure(env, up.client_key, concurrency="auto")
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert named(ev, "health_check_start")[0]["concurrency"] == 5  # min(servers, limit)
    # the handshake gate: auto is 128 per CPU, at least 32
    assert named(ev, "health_check_start")[0]["handshake_concurrency"] == max(32, 128 * os.cpu_count())
    done = named(ev, "health_check_complete")[0]
    assert isinstance(done["cpu_sec"], float) and 0 < done["cpu_sec"] <= done["duration_sec"] + 0.1
    assert done["gate_wait_max_sec"] == 0  # 5 servers, 256 places
    configure(env, up.client_key, concurrency="2")
    r, ev = once(env)
    assert named(ev, "health_check_start")[0]["concurrency"] == 2
    configure(env, up.client_key, task_extra="handshake_concurrency = 1")
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert named(ev, "health_check_start")[0]["handshake_concurrency"] == 1
    done = named(ev, "health_check_complete")[0]
    assert done["healthy_count"] == 3  # one at a time, all pass
    assert done["gate_wait_max_sec"] > 0  # the last ones waited for the one place
    for bad in ("concurrency = 65537", "concurrency = automatic", "log_each_result = some",
                "handshake_concurrency = 0", "handshake_concurrency = many"):
        configure(env, up.client_key, task_extra=bad, concurrency="auto")
        r = env.run("check-config")
        assert r.returncode == 2, (bad, r.stdout)


def test_overrun_is_reported(env, tmp_path):
    up = Sshd(tmp_path, name="up").start()
    silent = SilentListener()
    try:
        configure(env, up.client_key, task_extra="schedule = @every 1s", check_timeout="1500ms")
        once(env)
        add_servers(env, [("mute", "127.0.0.1", silent.port, "ready"),
                          ("web-1", "127.0.0.1", up.port, "ready")])
        r, ev = once(env)
        assert r.returncode == 0, r.stderr
        (over,) = named(ev, "health_check_overrun")
        assert over["level"] == "warning"
        assert over["interval_sec"] == 1 and over["duration_sec"] > 1
        assert over["servers_count"] == 2 and "concurrency" in over["hint"]
        # an interval longer than the run: no overrun
        configure(env, up.client_key, task_extra="schedule = @every 1h", check_timeout="1500ms")
        r, ev = once(env)
        assert named(ev, "health_check_overrun") == []
    finally:
        silent.close()
        up.stop()
