"""An operator's first hour (issue 14), end to end against the real things:
ten sshd on 127.0.0.2-11, an Ansible inventory, a running daemon, a loopback
webhook, real ansible-playbook.

inventory -> server_sync -> the servers are health-checked with the default
keys -> two sshd killed, one of them in maintenance -> the other's incident
opens after the debounce and is notified; the one in maintenance opens none
and sends nothing -> its sshd restarted resolves the incident and the server
is back to ready -> recover on a healthy server redeploys its recorded
service and does not reprovision -> recover after a host-key change stops
with the offered fingerprint -> known-hosts forget + scan --accept fixes it.
Assertions on events, rows, notifications and exit codes."""
import re

import pytest

from conftest import ROOT, DEADLINE, parse_lines
from fk_ansible import AnsibleHost, needs_ansible, free_port
from notify_server import NotifyServer
from sshd import Sshd, keygen

pytestmark = needs_ansible

N = 10


def trigger(env, task):
    r = env.run("trigger", task, "--follow", timeout=DEADLINE * 4)
    lines = r.stdout.splitlines()
    events = parse_lines("\n".join(lines[1:])) if lines and lines[0].startswith("run_id=") \
        else parse_lines(r.stdout)
    return r, events


def named(events, name):
    return [e for e in events if e.get("event") == name]


def statuses(env):
    return dict(env.sql("SELECT handle, status FROM servers"))


def open_incidents(env):
    return env.sql("SELECT s.handle, i.type FROM incidents i JOIN servers s ON s.id = i.server_id"
                   " WHERE i.resolved_at IS NULL ORDER BY s.handle")


class Fleet:
    def __init__(self, tmp):
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.key = tmp / "client_ed25519"
        keygen(self.key)
        self.sshd = []
        for i in range(N):
            addr = f"127.0.0.{i + 2}"
            s = Sshd(tmp, name=f"s{i + 1}", addrs=(addr,), client_key=self.key)
            self.sshd.append(s.start())

    def handle(self, i):
        return f"s{i + 1}"

    def inventory(self, path):
        lines = ["[web]"]
        for i, s in enumerate(self.sshd):
            addr, port = s.endpoints[0]
            lines.append(f"{self.handle(i)} ansible_host={addr} ansible_port={port}"
                         " ansible_user=root")
        path.write_text("\n".join(lines) + "\n")

    def restart(self, i, new_host_key=False):
        old = self.sshd[i]
        old.stop()
        host_key = None
        if not new_host_key:
            host_key = old.host_key
        else:
            host_key = keygen(old.dir / "host_ed25519_rebuilt")
        s = Sshd(self.tmp, name=f"s{i + 1}", addrs=tuple(old.addrs), client_key=self.key,
                 host_key=host_key)
        s.ports = old.ports
        s.endpoints = old.endpoints
        self.sshd[i] = s.start()
        return s

    def close(self):
        for s in self.sshd:
            s.stop()


@pytest.fixture
def world(tmp_path, daemons):
    fleet = Fleet(tmp_path / "fleet")
    hook = NotifyServer()
    h = None
    try:
        (tmp_path / "ansible").mkdir()
        # The Ansible side (playbooks, deploy root, vars) as the Ansible
        # tests set it up, on the first server's sshd.
        h = AnsibleHost(tmp_path / "ansible")
        d = start_daemon(tmp_path, fleet, hook, h, daemons)
        yield fleet, hook, h, d
    finally:  # also when the set-up failed: no sshd outlives the test
        if h:
            h.close()
        hook.close()
        fleet.close()


def start_daemon(tmp_path, fleet, hook, h, daemons):
    inv = tmp_path / "inventory.ini"
    fleet.inventory(inv)
    (tmp_path / "wh.secret").write_text("first-hour-secret\n")
    conf = h.env.conf.read_text()
    conf = conf.replace(f"key_file = {h.sshd.client_key}", f"key_file = {fleet.key}")
    conf += f"""
[provider.inventory]
file = {inv}

[task.server_sync]
schedule = @every 1h

[task.health_check]
schedule = @every 1h
check_timeout = 3s

[notify.hook]
type = webhook
api_url = {hook.url}/hook
secret_file = {tmp_path / 'wh.secret'}
rate_limit_per_minute = 60
"""
    h.env.conf.write_text(conf)
    check = h.env.run("check-config")
    assert check.returncode == 0, check.stderr
    d = daemons(h.env)
    d.wait_for("scheduler_started")
    return d


def test_the_first_hour(world):
    fleet, hook, h, d = world
    env = h.env

    # inventory -> server_sync: ten servers, ready (they exist and are set up)
    r, ev = trigger(env, "server_sync")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert named(ev, "server_sync_complete")[0]["servers_discovered"] == N
    assert not named(ev, "provisioning_trigger_published")
    assert set(statuses(env).values()) == {"ready"}

    # checked with the default keys: all healthy, their keys learnt
    r, ev = trigger(env, "health_check")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert named(ev, "health_check_complete")[0]["healthy_count"] == N
    rows = {s["handle"]: s for s in parse_lines(env.run("servers", "--json").stdout)}
    assert all(rows[fleet.handle(i)]["health"] == "healthy" for i in range(N))

    # s10 goes into maintenance; s9 and s10 go down
    hook.wait_requests(N)  # the ten server_discovered messages
    seen = len(hook.requests)
    r = env.run("servers", "maintenance", "s10", "--for", "1h", "--reason", "disk swap")
    assert r.returncode == 0, r.stderr
    fleet.sshd[8].stop()
    fleet.sshd[9].stop()
    for _ in range(2):  # failure_threshold 2 (the default)
        r, ev = trigger(env, "health_check")
    created = named(ev, "server_unhealthy_incident_created")
    assert [e["server_handle"] for e in created] == ["s9"], [e["event"] for e in ev]
    assert [e["server_handle"] for e in named(ev, "health_transition_held")] == ["s10"]
    assert open_incidents(env) == [("s9", "server_unreachable")]
    got = hook.wait_requests(1, lambda q: (q.json or {}).get("kind") == "server_unreachable")
    assert "s9" in got[0].raw and "s10" not in got[0].raw
    assert statuses(env)["s9"] == "error"
    assert statuses(env)["s10"] == "ready"

    # s9's sshd back: resolved, ready again, and said
    fleet.restart(8)
    r, ev = trigger(env, "health_check")
    assert [e["server_handle"] for e in named(ev, "server_recovered")] == ["s9"]
    assert open_incidents(env) == []
    assert statuses(env)["s9"] == "ready"
    hook.wait_requests(1, lambda q: (q.json or {}).get("kind") == "server_recovered")
    assert not [q for q in hook.requests[seen:] if "s10" in q.raw]

    # recover on a healthy server: its recorded service is redeployed, no
    # reprovisioning
    port = free_port()
    r = env.run("services", "add", "s1", "alpha", "--repo", h.make_repo("alpha", port),
                "--port", str(port), "--start", f"python3 -m http.server {port} --bind 127.0.0.1")
    assert r.returncode == 0, r.stderr
    r = env.run("recover", "s1", "--follow", timeout=DEADLINE * 6)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr + str([e.get("event") for e in d.events[-30:]])
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    ev = parse_lines("\n".join(lines))
    assert [(e["service_name"], e["status"]) for e in named(ev, "service_redeployment")] == \
        [("alpha", "start"), ("alpha", "success")]
    playbooks = {e.get("playbook") for e in named(ev, "ansible_playbook_start")}
    assert not any("provision" in (p or "") for p in playbooks), playbooks
    assert statuses(env)["s1"] in ("ready", "in_use")

    # s3 rebuilt with a new host key: recover stops with the offered fingerprint
    new = fleet.restart(2, new_host_key=True)
    offered = re.search(r"SHA256:[A-Za-z0-9+/]+", __import__("subprocess").run(
        ["ssh-keygen", "-lf", str(new.host_key) + ".pub"], capture_output=True,
        text=True).stdout).group(0)
    port3 = free_port()
    r = env.run("services", "add", "s3", "beta", "--repo", h.make_repo("beta", port3),
                "--port", str(port3), "--start", f"python3 -m http.server {port3} --bind 127.0.0.1")
    assert r.returncode == 0, r.stderr
    r = env.run("recover", "s3", "--follow", timeout=DEADLINE * 4)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert offered in out, out[-3000:]
    assert "known-hosts" in out
    assert not [e for e in parse_lines("\n".join(
        line for line in r.stdout.splitlines() if line.startswith("{")))
        if e.get("event") == "ansible_playbook_start"]

    # the operator checks the key and trusts it deliberately
    r = env.run("known-hosts", "scan", "s3")
    assert r.returncode == 1 and offered in r.stdout + r.stderr
    assert env.run("known-hosts", "forget", "s3").returncode == 0
    r = env.run("known-hosts", "scan", "s3", "--accept")
    assert r.returncode == 0 and offered in r.stdout, r.stdout + r.stderr
    addr, port = new.endpoints[0]
    r = env.run("ssh-test", f"root@{addr}:{port}", "--key", str(fleet.key), "--policy", "strict")
    assert r.returncode == 0, r.stdout + r.stderr
    r, ev = trigger(env, "health_check")
    assert named(ev, "health_check_complete")[0]["unhealthy_count"] == 1  # s10 still down
