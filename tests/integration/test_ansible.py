"""The Ansible runner and `fleetkeeper ansible` / provisioning against the
loopback sshd with the real ansible-playbook (fk_ansible.py)."""
import json
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import DEADLINE, parse_lines, wait_until
from fk_ansible import AnsibleHost, needs_ansible, ansible_procs, unique_sleep
from prom import free_port, http_get

pytestmark = needs_ansible

PASSWORD = "pw-Zq81-never-shown"
SECRET = "tok-Kx93-never-shown"


@pytest.fixture
def host(tmp_path):
    h = AnsibleHost(tmp_path, extra_vars={"api_token": SECRET}, password=PASSWORD)
    h.add_server("vps-1")
    yield h
    h.close()


def test_secrets_correlation_and_artifacts(host, tmp_path):
    """Password (inventory only) and a secret extra var never appear in an
    event, an artifact or any /proc/*/cmdline or environ while the run goes on."""
    out = tmp_path / "deploy" / "probe"
    pb = tmp_path / "probe.yml"
    pb.write_text(f"""---
- hosts: all
  gather_facts: false
  tasks:
    - name: echo the secret (must be redacted)
      ansible.builtin.debug:
        msg: "token is {{{{ api_token }}}}"
    - name: record the correlation id
      ansible.builtin.shell: >
        echo "{{{{ fleetkeeper_correlation_id }}}} $FLEETKEEPER_CORRELATION_ID_REMOTE
        {{{{ lookup('env', 'FLEETKEEPER_CORRELATION_ID') }}}}" > {out}
    - name: linger so that the process list can be read
      ansible.builtin.command: sleep 3
      changed_when: false
""")
    leaks = []
    stop = threading.Event()

    def scan():
        while not stop.is_set():
            for pid, cmd in (ansible_procs(PASSWORD, ("cmdline", "environ"))
                             + ansible_procs(SECRET, ("cmdline", "environ"))):
                leaks.append(cmd)
            time.sleep(0.05)

    t = threading.Thread(target=scan)
    t.start()
    try:
        r = host.env.run("ansible", str(pb), "--server", "vps-1", "-e", "color=blue")
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert not leaks
    events = parse_lines(r.stdout)
    names = [e["event"] for e in events]
    assert "ansible_playbook_start" in names and "ansible_playbook_complete" in names
    start = next(e for e in events if e["event"] == "ansible_playbook_start")
    assert start["auth_mode"] == "password" and start["server_handle"] == "vps-1"
    assert start["server_ip"] == "127.0.0.1"
    results = [e for e in events if e["event"] == "ansible_task_result"]
    assert [e["status"] for e in results] == ["ok", "changed", "ok"]
    assert all(e["host"] == "vps-1" for e in results)
    done = next(e for e in events if e["event"] == "ansible_playbook_complete")
    assert (done["exit_code"], done["ok"], done["changed"], done["failed"]) == (0, 3, 1, 0)
    assert done["unreachable"] == 0 and done["skipped"] == 0 and done["duration_sec"] > 0
    cid = start["correlation_id"]
    assert all(e.get("correlation_id") == cid for e in events[1:])
    assert out.read_text().split() == [cid, cid]
    assert PASSWORD not in r.stdout + r.stderr and SECRET not in r.stdout + r.stderr
    # artifacts
    (art,) = list((host.env.state / "artifacts").iterdir())
    files = {p.name: p.read_text() for p in art.iterdir()}
    assert set(files) >= {"stdout", "stderr", "rc", "events.jsonl", "command"}
    assert files["rc"].strip() == "0"
    assert "***" in files["stdout"] and "token is ***" in files["stdout"]
    for name, text in files.items():
        assert PASSWORD not in text and SECRET not in text, name
    assert "FLEETKEEPER_CORRELATION_ID=" + cid in files["command"]
    assert len([json.loads(x) for x in files["events.jsonl"].splitlines()]) == 4
    # the stored events too
    rows = host.env.sql("SELECT line FROM events")
    assert rows and not any(PASSWORD in l or SECRET in l for (l,) in rows)
    # the private directory (inventory with the password) is gone
    assert ansible_procs(host.private_marker) == []
    assert list(host.private_tmp.iterdir()) == []


def test_playbook_timeout_kills_everything(tmp_path):
    h = AnsibleHost(tmp_path, playbook_timeout="3s")
    h.add_server("vps-1")
    try:
        pb = tmp_path / "hang.yml"
        hang = unique_sleep(7)
        pb.write_text(f"""---
- hosts: all
  gather_facts: false
  tasks:
    - name: hang
      ansible.builtin.command: {hang}
      delegate_to: localhost
      connection: local
""")
        t0 = time.monotonic()
        r = h.env.run("ansible", str(pb), "--server", "vps-1")
        took = time.monotonic() - t0
        assert r.returncode == 1, r.stdout[-2000:] + r.stderr
        events = parse_lines(r.stdout)
        (to,) = [e for e in events if e["event"] == "ansible_playbook_timeout"]
        assert to["timeout_sec"] == 3 and to["playbook"] == "hang.yml"
        (done,) = [e for e in events if e["event"] == "ansible_playbook_complete"]
        assert done["exit_code"] != 0 and done["error_type"] == "timeout"
        assert took < 3 + 2 + DEADLINE / 2
        assert ansible_procs(hang) == []
        assert ansible_procs(h.private_marker) == []
        assert [p.name for p in h.private_tmp.iterdir()] == []
    finally:
        h.close()


def test_remote_command_of_a_timed_out_run_dies_with_it(tmp_path):
    """The hanging command runs on the target (through sshd): the timeout
    kills the local group and the terminal hang-up kills the remote one."""
    h = AnsibleHost(tmp_path, playbook_timeout="10s")
    h.add_server("vps-1")
    marker = unique_sleep(8)
    try:
        pb = tmp_path / "hang_remote.yml"
        pb.write_text(f"""---
- hosts: all
  gather_facts: false
  tasks:
    - name: hang on the target
      ansible.builtin.command: {marker}
""")
        proc = h.env.start("ansible", str(pb), "--server", "vps-1")
        try:
            wait_until(lambda: ansible_procs(marker), what="the remote sleep to start")
            out, err = proc.communicate(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, out[-2000:] + err
        names = [e["event"] for e in parse_lines(out)]
        assert "ansible_playbook_timeout" in names
        wait_until(lambda: not ansible_procs(marker), what="the remote sleep to die")
        assert ansible_procs(str(pb)) == []
    finally:
        for pid, _ in ansible_procs(marker):
            os.kill(pid, 9)
        h.close()


def test_unknown_server_and_playbook(host):
    r = host.env.run("ansible", "health_check", "--server", "nope")
    assert r.returncode == 2 and "nope" in r.stderr
    r = host.env.run("ansible", "no_such_book", "--server", "vps-1")
    assert r.returncode == 2 and "not found" in r.stderr  # a usage error (issue 14)
    r = host.env.run("ansible", "health_check")
    assert r.returncode == 2


def test_ansible_runs_through_the_daemon_and_counts_in_its_metrics(host, daemons):
    """Issue 14 item 9: with a daemon running, `fleetkeeper ansible` runs in
    the daemon (one run row, its events in the daemon's log, its metrics),
    the CLI printing the run's events; a secret -e var appears nowhere."""
    port = free_port()
    conf = host.env.conf.read_text()
    assert "[metrics]\nlisten = \n" in conf
    host.env.conf.write_text(conf.replace("[metrics]\nlisten = \n",
                                          f"[metrics]\nlisten = 127.0.0.1:{port}\n"))
    secret_file = host.tmp / "secret.json"
    secret_file.write_text(json.dumps({"db_password": "dbpw-Qm27-never-shown"}))
    d = daemons(host.env)
    d.wait_for("metrics_listening")
    d.wait_for("scheduler_started")
    r = host.env.run("ansible", "health_check", "--server", "vps-1", "-e", f"@{secret_file}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    printed = parse_lines(r.stdout)
    assert [e["event"] for e in printed][-1] == "ansible_complete"
    cid = printed[-1]["correlation_id"]
    done = d.wait_for(lambda e: e.get("event") == "ansible_complete", what="ansible_complete")
    assert done[0]["correlation_id"] == cid and done[0]["logger"] == "ansible"
    assert host.env.sql("SELECT task, trigger, status, correlation_id FROM task_runs"
                        " WHERE task = 'ansible'") == [("ansible", "cli", "success", cid)]
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert 'fleetkeeper_task_runs_total{task="ansible",status="success"} 1' in body.splitlines()
    assert any(line.startswith("fleetkeeper_ansible_playbook_runs_total{")
               and "health_check" in line and 'result="success"' in line
               and line.endswith(" 1") for line in body.splitlines()), body
    assert "through the daemon" in r.stderr
    for text in ["".join(d.raw), r.stdout, r.stderr] + [l for (l,) in
                                                        host.env.sql("SELECT line FROM events")]:
        assert "dbpw-Qm27-never-shown" not in text and SECRET not in text
    # usage errors stay exit 2 with the daemon running
    r = host.env.run("ansible", "health_check", "--server", "nope")
    assert r.returncode == 2 and "nope" in r.stderr
    r = host.env.run("ansible", "no_such_book", "--server", "vps-1")
    assert r.returncode == 2 and "not found" in r.stderr

def test_provision_pending_server_to_ready(tmp_path):
    h = AnsibleHost(tmp_path)
    h.add_server("vps-new", status="pending_setup")
    h.add_server("vps-ready", status="ready")
    try:
        r = h.env.run("once", "provision")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        events = parse_lines(r.stdout)
        names = [e["event"] for e in events]
        trig = [e for e in events if e["event"] == "provisioner_trigger_received"]
        assert [e["server_handle"] for e in trig] == ["vps-new"]
        assert trig[0]["is_incident_recovery"] is False
        books = [e["playbook"] for e in events if e["event"] == "ansible_playbook_complete"]
        assert books == ["provision_access", "provision_software"]
        assert "provisioning_complete" in names and "provision_complete" in names
        row = h.env.sql("SELECT status, provisioning_attempts, provisioning_started_at"
                        " FROM servers WHERE handle = 'vps-new'")[0]
        assert row[0] == "ready" and row[1] == 1 and row[2] > 0
        assert h.env.sql("SELECT status FROM servers WHERE handle='vps-ready'")[0][0] == "ready"
        key = Path(str(h.sshd.client_key) + ".pub").read_text().split()[1]
        assert key in (tmp_path / "authorized_keys_provisioned").read_text()
        assert "PasswordAuthentication no" in (tmp_path / "sshd_config_copy").read_text()
        assert (tmp_path / "deploy" / ".run").is_dir()
        # nothing due any more: skipped, no playbook
        r = h.env.run("once", "provision")
        assert r.returncode == 0
        assert "provision_skipped" in [e["event"] for e in parse_lines(r.stdout)]
    finally:
        h.close()


def test_stuck_provisioning_is_retried_and_the_cooldown_holds(tmp_path):
    """provisioning_timeout: a server stuck in provisioning for longer is
    retried, a younger one is left alone; cooldown: a pending_setup server
    triggered moments ago is not triggered again."""
    h = AnsibleHost(tmp_path)
    h.env.conf.write_text(h.env.conf.read_text().replace(
        "kill_grace = 2s", "kill_grace = 2s\nprovisioning_timeout = 60s\ncooldown = 60s"))
    try:
        now = time.time()
        for handle, status, age in [("stuck-old", "provisioning", 120),
                                    ("stuck-new", "provisioning", 10),
                                    ("pend-cool", "pending_setup", 10),
                                    ("pend-due", "pending_setup", 120)]:
            h.add_server(handle, status=status)
            h.exec_sql("UPDATE servers SET provisioning_started_at = ?,"
                       " provisioning_attempts = 1 WHERE handle = ?", now - age, handle)
        r = h.env.run("once", "provision")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        trig = sorted(e["server_handle"] for e in parse_lines(r.stdout)
                      if e["event"] == "provisioner_trigger_received")
        assert trig == ["pend-due", "stuck-old"]
        rows = {handle: (status, attempts) for handle, status, attempts in
                h.env.sql("SELECT handle, status, provisioning_attempts FROM servers")}
        assert rows == {"stuck-old": ("ready", 2), "pend-due": ("ready", 2),
                        "stuck-new": ("provisioning", 1), "pend-cool": ("pending_setup", 1)}
    finally:
        h.close()


def test_services_add_list_rm(host):
    r = host.env.run("services", "add", "vps-1", "web", "--repo", "file:///srv/web.git",
                     "--ref", "v1", "--port", "8080", "--start", "./run")
    assert r.returncode == 0, r.stderr
    r = host.env.run("services", "add", "nope", "web", "--repo", "file:///srv/web.git")
    assert r.returncode != 0 and "nope" in r.stderr
    rows = parse_lines(host.env.run("services", "list", "--json").stdout)
    assert [(s["server"], s["name"], s["ref"], s["port"]) for s in rows] == \
        [("vps-1", "web", "v1", 8080)]
    r = host.env.run("services", "rm", "vps-1", "web")
    assert r.returncode == 0, r.stderr
    assert parse_lines(host.env.run("services", "list", "--json").stdout) == []
    r = host.env.run("services", "rm", "vps-1", "web")
    assert r.returncode != 0 and "web" in r.stderr


def test_artifacts_older_than_the_retention_are_pruned(host):
    art = host.env.state / "artifacts"
    old, recent = art / "1_run_old_0000", art / "2_run_recent_0000"
    old.mkdir(parents=True)
    (old / "rc").write_text("0\n")
    recent.mkdir()
    then = time.time() - 40 * 86400
    os.utime(old, (then, then))
    r = host.env.run("ansible", "health_check", "--server", "vps-1")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert not old.exists() and recent.exists()
    assert len([p for p in art.iterdir() if p.name not in (recent.name,)]) == 1
