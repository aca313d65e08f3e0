"""server_sync (issue 6): Time4VPS-shaped API on the replay server, an Ansible
inventory of five hosts with groups, ghosts, vanished and reappearing
servers, details refresh (concurrent requests, per-server failures) and
provisioning triggers; how new servers enter (issue 14: initial_status,
triggers only with a provision task, the check-config warning)."""
import base64
import json
import shutil

import pytest

from conftest import parse_lines
from replay import Replay

PASSWORD = "t4v-Sup3rSecret-pw"


@pytest.fixture
def replay():
    r = Replay(repos=0).start()
    r.servers = [{"server_id": 101, "domain": "alpha.example", "ip": "10.0.0.1", "status": "Active"},
                 {"server_id": 102, "domain": "beta.example", "ip": "10.0.0.2", "status": "Active"},
                 {"server_id": 103, "domain": "ghost.example", "ip": "10.0.0.3", "status": "Active"}]
    for s in r.servers:
        r.details[str(s["server_id"])] = {"cpu_cores": 2, "ram_limit": 4096, "disk_limit": 80,
                                          "ram_used": 1024, "disk_usage": 10, "os": "debian-12"}
    yield r
    r.stop()


def t4v_config(env, replay, extra=""):
    cred = env.dir / "t4v.json"
    cred.write_text(json.dumps({"username": "ops", "password": PASSWORD}))
    env.write_config(f"""[provider.time4vps]
api_url = {replay.url}/t4v
credentials_file = {cred}
ghost_servers = 10.0.0.3
details_interval = 1h
timeout = 10s
{extra}

[task.server_sync]
""")


def once(env):
    r = env.run("once", "server_sync")
    assert PASSWORD not in r.stdout + r.stderr
    assert "runtime error" not in r.stderr and "Sanitizer" not in r.stderr, r.stderr
    return r, parse_lines(r.stdout)


def named(events, name):
    return [e for e in events if e.get("event") == name]


def complete(events):
    (c,) = named(events, "server_sync_complete")
    return c


def rows(env):
    return {r[0]: r[1:] for r in env.sql(
        "SELECT handle, ip, status, is_managed, provider, provider_id FROM servers")}


def test_time4vps_discovery_ghost_missing_reappeared(env, replay):
    t4v_config(env, replay)
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert named(ev, "server_sync_start")[0]["providers"] == "time4vps"
    c = complete(ev)
    assert c["servers_discovered"] == 3 and c["details_updated"] == 3
    # no provision task: nothing consumes triggers, none is published
    assert c["triggers_published"] == 0 and c["servers_missing"] == 0
    assert not named(ev, "provisioning_trigger_published")
    assert rows(env) == {
        "vps-101": ("10.0.0.1", "pending_setup", 1, "time4vps", "101"),
        "vps-102": ("10.0.0.2", "pending_setup", 1, "time4vps", "102"),
        "vps-103": ("10.0.0.3", "reserved", 0, "time4vps", "103"),
    }
    assert len(named(ev, "managed_server_discovered")) == 2
    (g,) = named(ev, "ghost_server_discovered")
    assert g["server_handle"] == "vps-103"
    assert {e["server_handle"]: e["is_ghost"] for e in named(ev, "server_discovered")} == {
        "vps-101": False, "vps-102": False, "vps-103": True}
    expect = "Basic " + base64.b64encode(b"ops:" + PASSWORD.encode()).decode()
    assert all(q["headers"]["Authorization"] == expect for q in replay.requests_to("/t4v/"))
    (details,) = env.sql("SELECT details FROM servers WHERE handle='vps-101'")[0]
    d = json.loads(details)
    assert d["cpu_cores"] == 2 and d["os"] == "debian-12" and d["fetched_at"] > 0

    # Details are not fetched again within details_interval.
    n = len(replay.requests_to("/t4v/server/"))
    r, ev = once(env)
    assert complete(ev)["details_updated"] == 0 and complete(ev)["servers_discovered"] == 0
    assert len(replay.requests_to("/t4v/server/")) == n

    # One vanishes from a complete listing, then comes back.
    con_status = "ready"
    con = env.connect()
    with con:
        con.execute("UPDATE servers SET status = ? WHERE handle = 'vps-102'", (con_status,))
    con.close()
    gone = replay.servers.pop(1)
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    (m,) = named(ev, "server_missing_from_provider")
    assert m["server_handle"] == "vps-102" and complete(ev)["servers_missing"] == 1
    assert rows(env)["vps-102"][1] == "missing"
    replay.servers.append(gone)
    r, ev = once(env)
    (re_,) = named(ev, "server_reappeared")
    assert re_["server_handle"] == "vps-102"
    assert rows(env)["vps-102"][1] == "ready"


def many_servers(replay, n, delay):
    replay.servers = [{"server_id": 200 + i, "domain": "s%d.example" % i, "ip": "10.0.1.%d" % i,
                       "status": "Active"} for i in range(n)]
    replay.details = {str(200 + i): {"cpu_cores": i + 1, "ram_limit": 2048, "disk_limit": 40,
                                     "ram_used": 512, "disk_usage": 5, "os": "debian-12"}
                      for i in range(n)}
    replay.details_delay = delay


def test_time4vps_details_fetched_concurrently(env, replay):
    n, delay = 10, 0.5
    many_servers(replay, n, delay)
    t4v_config(env, replay)
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    c = complete(ev)
    assert c["servers_discovered"] == n and c["details_updated"] == n
    assert not named(ev, "server_details_failed")
    # 4 in flight at once (T4V_DETAILS_PARALLEL): 3 rounds, not 10.
    assert 2 <= replay.t4v_max_in_flight <= 4
    assert c["duration_sec"] < 0.6 * n * delay, c
    got = {h: json.loads(d) for h, d in env.sql("SELECT handle, details FROM servers")}
    assert len(got) == n
    for i in range(n):
        d = got["vps-%d" % (200 + i)]
        assert d["cpu_cores"] == i + 1 and d["os"] == "debian-12" and d["fetched_at"] > 0
    assert len(replay.requests_to("/t4v/server/")) == n


def test_time4vps_details_failure_is_per_server(env, replay):
    many_servers(replay, 5, 0)
    replay.fault("/t4v/server/202", "502", times=-1)
    del replay.details["204"]  # 404
    t4v_config(env, replay)
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert complete(ev)["details_updated"] == 3
    failed = {e["server_handle"]: e["error"] for e in named(ev, "server_details_failed")}
    assert set(failed) == {"vps-202", "vps-204"}
    assert "HTTP 502" in failed["vps-202"] and "HTTP 404" in failed["vps-204"]
    assert len(replay.requests_to("/t4v/server/202")) == 4  # 3 retries
    assert PASSWORD not in json.dumps(failed)
    stored = dict(env.sql("SELECT handle, details IS NOT NULL FROM servers"))
    assert stored == {"vps-200": 1, "vps-201": 1, "vps-202": 0, "vps-203": 1, "vps-204": 0}


def test_time4vps_failure_changes_nothing(env, replay):
    t4v_config(env, replay)
    assert once(env)[0].returncode == 0
    replay.fault("/t4v/server", "502", times=-1)
    r, ev = once(env)
    assert r.returncode == 1
    assert named(ev, "server_sync_failed")[0]["error_type"] == "provider_incomplete_listing"
    assert not named(ev, "server_missing_from_provider")
    assert all(v[1] != "missing" for v in rows(env).values())


@pytest.mark.parametrize("body", [
    {"servers": []}, [{"domain": "x"}], [{"server_id": "abc"}], [None], "[[[[",
])
def test_time4vps_malformed_list(env, replay, body):
    t4v_config(env, replay)
    assert once(env)[0].returncode == 0
    replay.servers = body if isinstance(body, list) else body
    if isinstance(body, str):
        replay.servers = []
        replay._send_raw = body
        orig = replay._t4v

        def raw(h, parts):
            if parts == ["t4v", "server"]:
                return replay._send(h, 200, body.encode())
            return orig(h, parts)
        replay._t4v = raw
    r, ev = once(env)
    assert r.returncode == 1
    assert not named(ev, "server_missing_from_provider")


def test_bad_credentials_file(env, replay):
    t4v_config(env, replay)
    (env.dir / "t4v.json").write_text("not json " + PASSWORD)
    r, ev = once(env)
    assert r.returncode == 1
    assert replay.requests == []


INVENTORY = """
[web]
web1 ansible_host=127.0.0.11 ansible_port=2201 ansible_user=deploy
web2 ansible_host=127.0.0.12

[db]
db1 ansible_host=127.0.0.21 ansible_user=postgres

[cache]
cache1 ansible_host=127.0.0.31

[prod:children]
web
db

[spare]
spare1 ansible_host=127.0.0.99
"""


@pytest.mark.skipif(shutil.which("ansible-inventory") is None, reason="needs ansible")
def test_inventory_five_hosts_with_groups(env):
    inv = env.dir / "inventory.ini"
    inv.write_text(INVENTORY)
    env.write_config(f"""[provider.inventory]
file = {inv}
ghost_servers = spare1

[task.server_sync]
""")
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert named(ev, "server_sync_start")[0]["providers"] == "inventory"
    got = {h: (ip, port, user, status, managed, json.loads(labels) if labels else None)
           for h, ip, port, user, status, managed, labels in env.sql(
               "SELECT handle, ip, port, ssh_user, status, is_managed, labels FROM servers")}
    # An inventory's servers exist and are set up: they enter ready (issue 14;
    # they used to wait in pending_setup, never health-checked).
    assert got == {
        "web1": ("127.0.0.11", 2201, "deploy", "ready", 1, ["prod", "web"]),
        "web2": ("127.0.0.12", 22, None, "ready", 1, ["prod", "web"]),
        "db1": ("127.0.0.21", 22, "postgres", "ready", 1, ["db", "prod"]),
        "cache1": ("127.0.0.31", 22, None, "ready", 1, ["cache"]),
        "spare1": ("127.0.0.99", 22, None, "reserved", 0, ["spare"]),
    }
    assert complete(ev)["servers_discovered"] == 5 and complete(ev)["triggers_published"] == 0
    assert {e["server_handle"]: e["status"] for e in named(ev, "managed_server_discovered")} == {
        "web1": "ready", "web2": "ready", "db1": "ready", "cache1": "ready"}

    # cache1 removed, web2 moved: missing and updated.
    inv.write_text(INVENTORY.replace("cache1 ansible_host=127.0.0.31\n", "")
                   .replace("127.0.0.12", "127.0.0.13"))
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    c = complete(ev)
    assert c["servers_missing"] == 1 and c["servers_updated"] == 1
    assert env.sql("SELECT status FROM servers WHERE handle='cache1'") == [("missing",)]

    # A broken inventory is a failed listing, not an empty one.
    inv.write_text("[web\nthis is not an inventory ===\n")
    r, ev = once(env)
    assert r.returncode == 1
    assert not named(ev, "server_missing_from_provider")


def test_inventory_without_ansible(env, tmp_path):
    inv = env.dir / "inventory.ini"
    inv.write_text(INVENTORY)
    env.write_config(f"""[provider.inventory]
file = {inv}

[task.server_sync]
""")
    from conftest import base_env
    r = env.run("once", "server_sync", env=base_env(PATH=str(tmp_path / "empty")))
    assert r.returncode == 1
    ev = parse_lines(r.stdout)
    (f,) = named(ev, "server_sync_provider_failed")
    assert "ansible-inventory" in f["error"] and "installed" in f["error"]


def test_no_providers_is_skipped(env):
    env.write_config("[task.server_sync]\n")
    r, ev = once(env)
    assert r.returncode == 0
    assert named(ev, "server_sync_skipped")[0]["reason"] == "no_providers"


# ---- how new servers enter (issue 14) ----

needs_inventory = pytest.mark.skipif(shutil.which("ansible-inventory") is None,
                                     reason="needs ansible")
PROVISION = "\n[task.provision]\n"


def line_of(env, text):
    return env.conf.read_text().splitlines().index(text) + 1


def discovered_note(env, handle):
    return [(body, json.loads(fields)) for body, fields in env.sql(
        "SELECT body, fields FROM notifications WHERE kind = 'server_discovered' ORDER BY id")
        if json.loads(fields).get("server_handle") == handle][0]


def test_time4vps_triggers_only_with_a_provision_task(env, replay):
    t4v_config(env, replay, extra=PROVISION)
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert complete(ev)["triggers_published"] == 2
    assert sorted(e["server_handle"] for e in named(ev, "provisioning_trigger_published")) == [
        "vps-101", "vps-102"]
    body, fields = discovered_note(env, "vps-101")
    assert "status pending_setup (provisioning next)" in body
    assert fields["status"] == "pending_setup"
    ok = env.run("check-config")
    assert ok.returncode == 0 and "warning" not in ok.stderr, ok.stderr


def test_time4vps_without_provisioning_warns_and_says_nothing_of_it(env, replay):
    """pending_setup without a provision task: check-config warns (exit 0), the
    discovery message no longer promises provisioning, no trigger."""
    t4v_config(env, replay)
    r = env.run("check-config")
    assert r.returncode == 0, r.stderr
    at = line_of(env, "[provider.time4vps]")
    assert f"{env.conf}:{at}: warning: [provider.time4vps] new servers enter pending_setup" in r.stderr
    assert "type = provision" in r.stderr and "initial_status = ready" in r.stderr
    r, ev = once(env)
    body, fields = discovered_note(env, "vps-101")
    assert "provisioning next" not in body and "status pending_setup" in body
    assert complete(ev)["triggers_published"] == 0


def test_time4vps_initial_status_ready(env, replay):
    t4v_config(env, replay, extra="initial_status = ready")
    r = env.run("check-config")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert {k: v[1] for k, v in rows(env).items()} == {
        "vps-101": "ready", "vps-102": "ready", "vps-103": "reserved"}
    body, fields = discovered_note(env, "vps-102")
    assert fields["status"] == "ready" and "status ready." in body


def test_initial_status_bad_value_is_a_config_error(env, replay):
    t4v_config(env, replay, extra="initial_status = provisioning")
    r = env.run("check-config")
    assert r.returncode == 2
    assert "initial_status" in r.stderr and "ready|pending_setup" in r.stderr, r.stderr


@needs_inventory
def test_inventory_initial_status_pending_setup_warns_on_its_line(env):
    inv = env.dir / "inventory.ini"
    inv.write_text(INVENTORY)
    env.write_config(f"""[provider.inventory]
file = {inv}
initial_status = pending_setup

[task.server_sync]
""")
    r = env.run("check-config")
    assert r.returncode == 0, r.stderr
    at = line_of(env, "initial_status = pending_setup")
    assert f"{env.conf}:{at}: warning: [provider.inventory] new servers enter pending_setup," in r.stderr
    r, ev = once(env)
    assert env.sql("SELECT status FROM servers WHERE handle = 'web1'") == [("pending_setup",)]


@needs_inventory
def test_missing_during_an_outage_keeps_the_status_to_restore(env):
    """A server that leaves the listing while its incident is open comes back
    in error with the incident's previous status kept, so resolving the
    incident restores what it was. It used to come back with previous_status
    'missing', and the resolution then moved it to missing."""
    inv = env.dir / "inventory.ini"
    inv.write_text(INVENTORY)
    env.write_config(f"""[provider.inventory]
file = {inv}

[task.server_sync]
""")
    assert once(env)[0].returncode == 0
    con = env.connect()
    with con:  # an outage of db1, as health_check records it
        con.execute("UPDATE servers SET status = 'error', previous_status = 'in_use'"
                    " WHERE handle = 'db1'")
        con.execute("INSERT INTO incidents (server_id, type, status, detected_at)"
                    " SELECT id, 'server_unreachable', 'detected', 1 FROM servers"
                    " WHERE handle = 'db1'")
    con.close()
    state = "SELECT status, previous_status FROM servers WHERE handle = 'db1'"
    inv.write_text(INVENTORY.replace("db1 ansible_host=127.0.0.21 ansible_user=postgres\n", ""))
    assert once(env)[0].returncode == 0
    assert env.sql(state) == [("missing", "in_use")]
    inv.write_text(INVENTORY)
    r, ev = once(env)
    (re_,) = named(ev, "server_reappeared")
    assert re_["status"] == "error"
    assert env.sql(state) == [("error", "in_use")]
    (iid,) = env.sql("SELECT id FROM incidents")[0]
    r = env.run("incidents", "close", str(iid), "--reason", "it was the switch")
    assert r.returncode == 0, r.stderr
    assert env.sql(state) == [("in_use", None)]

    # Without an incident, a server that comes back has its old status and
    # no stale previous_status.
    inv.write_text(INVENTORY.replace("web2 ansible_host=127.0.0.12\n", ""))
    once(env)
    inv.write_text(INVENTORY)
    once(env)
    assert env.sql("SELECT status, previous_status FROM servers WHERE handle = 'web2'") == [
        ("ready", None)]
