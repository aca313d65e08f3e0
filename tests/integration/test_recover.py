"""Incident recovery (`fleetkeeper recover`) with the real ansible-playbook
against the loopback sshd: in process, and through a running daemon with
--follow. Recovery redeploys and nothing else: reprovisioning only when asked
(--reprovision, [recovery] reprovision), never after a host-key failure; no
services is a no-op; success brings the server back to ready / in_use."""
import json
import os
import re
import socket
import subprocess

import pytest

from conftest import parse_lines, DEADLINE, failing_trigger, wait_until, base_env
from fk_ansible import AnsibleHost, needs_ansible, free_port
from sshd import Sshd, keygen

pytestmark = needs_ansible


def add_service(h, server, name, repo, port):
    r = h.env.run("services", "add", server, name, "--repo", repo, "--port", str(port),
                  "--start", f"python3 -m http.server {port} --bind 127.0.0.1",
                  "--env", "SERVICE_SECRET=s3cr3t-env")
    assert r.returncode == 0, r.stderr


def assert_running(h, name, port):
    pid = int((h.deploy / ".run" / f"{name}.pid").read_text())
    assert os.path.exists(f"/proc/{pid}")
    assert os.readlink(f"/proc/{pid}/cwd") == str(h.deploy / name)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_recover_in_process_two_good_one_broken(tmp_path):
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-42")
        p1, p2 = free_port(), free_port()
        add_service(h, "vps-42", "alpha", h.make_repo("alpha", p1), p1)
        add_service(h, "vps-42", "beta", h.make_repo("beta", p2), p2)
        add_service(h, "vps-42", "broken", f"file://{tmp_path}/repos/missing.git", free_port())
        r = h.env.run("services", "list", "vps-42", "--json")
        assert [s["name"] for s in parse_lines(r.stdout)] == ["alpha", "beta", "broken"]
        assert "s3cr3t-env" not in r.stdout
        h.open_incident("vps-42")

        r = h.env.run("recover", "vps-42")
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr
        events = parse_lines(r.stdout)
        (start,) = [e for e in events if e["event"] == "incident_recovery_start"]
        assert start["server_handle"] == "vps-42" and start["services_count"] == 3
        red = [(e["service_name"], e["status"]) for e in events
               if e["event"] == "service_redeployment"]
        assert red == [("alpha", "start"), ("alpha", "success"), ("beta", "start"),
                       ("beta", "success"), ("broken", "start"), ("broken", "failed")]
        (done,) = [e for e in events if e["event"] == "incident_recovery_complete"]
        assert (done["success_count"], done["fail_count"]) == (2, 1)
        assert "recover_failed" in [e["event"] for e in events]
        cids = {e.get("correlation_id") for e in events if e["event"] != "logging_initialized"}
        assert len(cids) == 1
        assert h.env.sql("SELECT status FROM incidents") == [("failed",)]
        assert h.env.sql("SELECT status FROM servers") == [("error",)]
        assert h.env.sql("SELECT task, status FROM task_runs") == [("recover", "failed")]
        assert_running(h, "alpha", p1)
        assert_running(h, "beta", p2)
        assert "s3cr3t-env" not in r.stdout
        r = h.env.run("incidents", "--json")
        assert parse_lines(r.stdout)[0]["status"] == "failed"
    finally:
        h.close()


def test_recover_follow_through_daemon(tmp_path, daemons):
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-7")
        p1 = free_port()
        add_service(h, "vps-7", "alpha", h.make_repo("alpha", p1), p1)
        h.open_incident("vps-7")
        d = daemons(h.env)
        d.wait_for("scheduler_started")
        follower = h.env.start("recover", "vps-7", "--follow")
        d.wait_for("incident_recovery_start")
        second = h.env.run("recover", "vps-7")
        assert second.returncode == 1 and "already recovering" in second.stderr
        out, err = follower.communicate(timeout=DEADLINE * 4)
        assert follower.returncode == 0, out[-3000:] + err
        lines = out.splitlines()
        assert lines[0].startswith("run_id=")
        streamed = parse_lines("\n".join(lines[1:]))
        names = [e["event"] for e in streamed]
        for ev in ("recover_start", "incident_recovery_start", "ansible_playbook_start",
                   "ansible_task_result", "ansible_playbook_complete", "service_redeployment",
                   "incident_recovery_complete", "incident_resolved", "recover_complete"):
            assert ev in names, ev
        cid = streamed[0]["correlation_id"]
        assert cid in lines[0] and all(e["correlation_id"] == cid for e in streamed)
        assert cid in second.stderr
        d.wait_for("recover_complete")
        daemon_names = [e["event"] for e in d.events if e.get("correlation_id") == cid]
        assert daemon_names == names
        assert h.env.sql("SELECT status FROM incidents") == [("resolved",)]
        assert h.env.sql("SELECT status FROM servers") == [("in_use",)]
        assert_running(h, "alpha", p1)
    finally:
        h.close()


def test_second_in_process_recover_of_the_same_server_is_refused(tmp_path):
    """Without a daemon, two `recover` processes for one server: the second
    is answered "already recovering" with the first one's correlation id
    (a lock in the state directory), and only one recovery runs."""
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-9")
        p1 = free_port()
        add_service(h, "vps-9", "alpha", h.make_repo("alpha", p1), p1)
        h.open_incident("vps-9")
        lock = h.env.state / "recover-vps-9.lock"
        first = h.env.start("recover", "vps-9")
        try:
            wait_until(lambda: lock.exists() and lock.read_text().startswith("run_recover_"),
                       what="the first recovery to hold the lock")
            running = lock.read_text()
            second = h.env.run("recover", "vps-9")
            assert second.returncode == 1
            assert f"already recovering vps-9 (correlation_id {running})" in second.stderr
            assert "incident_recovery_start" not in second.stdout
            out, err = first.communicate(timeout=DEADLINE * 3)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == 0, out[-3000:] + err
        starts = [e for e in parse_lines(out) if e["event"] == "incident_recovery_start"]
        assert [e["correlation_id"] for e in starts] == [running]
        assert h.env.sql("SELECT task, status FROM task_runs") == [("recover", "success")]
        assert h.env.sql("SELECT status FROM incidents") == [("resolved",)]
        # released: a later recovery of the same server runs
        h.open_incident("vps-9")
        again = h.env.run("recover", "vps-9")
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr
    finally:
        h.close()


def test_auto_recover_without_a_daemon_runs_the_recovery_inline(tmp_path):
    """health_check with auto_recover and no daemon: the incident opened for
    an unreachable server goes through the recovery right away (the server
    stays down and is not reprovisioned without [recovery] reprovision, so
    the recovery fails and so does the incident)."""
    h = AnsibleHost(tmp_path, extra_tasks="[task.health_check]\nfailure_threshold = 1\n"
                                          "auto_recover = true\ncheck_timeout = 3s\n")
    try:
        h.add_server("vps-a", status="in_use")
        add_service(h, "vps-a", "alpha", f"file://{tmp_path}/repos/none.git", free_port())
        h.sshd.stop()
        r = h.env.run("once", "health_check")
        events = parse_lines(r.stdout)
        names = [e["event"] for e in events]
        assert "server_unhealthy_incident_created" in names
        (req,) = [e for e in events if e["event"] == "incident_recovery_requested"]
        assert req["via"] == "inline" and req["server_handle"] == "vps-a"
        (start,) = [e for e in events if e["event"] == "incident_recovery_start"]
        assert start["server_handle"] == "vps-a"
        assert "incident_recovery_complete" in names
        assert "provisioner_trigger_received" not in names
        assert h.env.sql("SELECT type, status FROM incidents WHERE type = 'server_unreachable'") \
            == [("server_unreachable", "failed")]
        # The inline recovery's result is the run's: it failed, so the run
        # fails (it used to complete as if nothing happened).
        assert r.returncode != 0, r.stdout[-3000:] + r.stderr
        (failed,) = [e for e in events if e["event"] == "health_check_failed"]
        assert failed["error_type"] == "recovery_failed"
        assert "recovery of vps-a" in failed["error"]
        assert "health_check_complete" not in names
    finally:
        h.close()


FAIL_END = failing_trigger("fail_end", "incidents", "BEFORE UPDATE OF status", "store unavailable",
                           when="NEW.status IN ('resolved', 'failed')")


def test_recover_errors_are_reported_once_with_their_type(tmp_path):
    """A store failure at the end of a recovery is reported once, by the
    run, as error_type store (it used to be logged as recovery_store_failed
    and then reported again as not_found); an unknown server is not_found."""
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-s", status="in_use")
        p1 = free_port()
        add_service(h, "vps-s", "alpha", h.make_repo("alpha", p1), p1)
        h.open_incident("vps-s")
        for st in FAIL_END:
            h.exec_sql(st)
        r = h.env.run("recover", "vps-s")
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr
        events = parse_lines(r.stdout)
        errors = [e for e in events if e["level"] in ("error", "critical")]
        assert [e["event"] for e in errors] == ["recover_failed"], errors
        assert errors[0]["error_type"] == "store"
        assert "store unavailable" in errors[0]["error"]
        assert h.env.sql("SELECT status FROM incidents") == [("recovering",)]

        r = h.env.run("recover", "vps-none")
        assert r.returncode == 1
        errors = [e for e in parse_lines(r.stdout) if e["level"] in ("error", "critical")]
        assert [(e["event"], e["error_type"]) for e in errors] == [("recover_failed", "not_found")]
        assert errors[0]["error"] == "no server 'vps-none'"
    finally:
        h.close()


# ---- recovery that does what it says (issue 14, trial item 2) ----

def kex_only_host(tmp_path, **kw):
    """An AnsibleHost whose sshd offers only a key exchange that OpenSSH
    (and so ansible) speaks but libssh2 (the SSH test) does not: the SSH
    test fails at the handshake while reprovisioning and deploying through
    ansible would work, so whether recovery reprovisions shows in what the
    playbooks change."""
    h = AnsibleHost(tmp_path, **kw)
    h.sshd.stop()
    plain = Sshd.write_config

    def write_config():
        plain(h.sshd)
        with open(h.sshd.conf, "a") as f:
            f.write("KexAlgorithms sntrup761x25519-sha512@openssh.com\n")

    h.sshd.write_config = write_config
    h.sshd.start()
    return h


def playbooks_run(events):
    return [e["playbook"] for e in events if e["event"] == "ansible_playbook_start"]


def test_recover_of_an_unreachable_server_does_not_reprovision(tmp_path):
    """Without --reprovision, a server that fails its SSH test is not
    reprovisioned (it used to be, silently: key authorized, sshd_config
    rewritten); the run fails with error_type unreachable and says how to
    reprovision."""
    h = kex_only_host(tmp_path)
    try:
        h.add_server("vps-u", status="in_use")
        p1 = free_port()
        add_service(h, "vps-u", "alpha", h.make_repo("alpha", p1), p1)
        h.open_incident("vps-u")
        sshd_config = (tmp_path / "sshd_config_copy").read_bytes()

        r = h.env.run("recover", "vps-u")
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr
        events = parse_lines(r.stdout)
        names = [e["event"] for e in events]
        assert "provisioner_trigger_received" not in names
        assert playbooks_run(events) == []
        assert (tmp_path / "sshd_config_copy").read_bytes() == sshd_config
        assert not (tmp_path / "authorized_keys_provisioned").exists()
        (test,) = [e for e in events if e["event"] == "ssh_connection_test"]
        assert test["success"] is False and test["error_type"] == "handshake_failed"
        (why,) = [e for e in events if e["event"] == "recovery_server_unreachable"]
        assert (why["reprovision"], why["reason"]) == (False, "not_requested")
        (failed,) = [e for e in events if e["event"] == "recover_failed"]
        assert failed["error_type"] == "unreachable"
        assert "not reprovisioned" in failed["error"]
        assert "fleetkeeper recover vps-u --reprovision" in failed["error"]
        assert "recovery of vps-u failed" in r.stderr and "--reprovision" in r.stderr
        assert h.env.sql("SELECT status FROM incidents") == [("failed",)]
        assert h.env.sql("SELECT status FROM servers") == [("error",)]
    finally:
        h.close()


@pytest.mark.parametrize("how", ["flag", "config"])
def test_recover_reprovisions_when_asked(tmp_path, how):
    """With --reprovision (or [recovery] reprovision = true) the same server
    is reprovisioned first (provision_access authorizes the key and
    rewrites sshd_config), then its service is redeployed and the server is
    back to in_use."""
    extra = "[recovery]\nreprovision = true\n" if how == "config" else ""
    h = kex_only_host(tmp_path, extra_tasks=extra)
    try:
        h.add_server("vps-r", status="in_use")
        p1 = free_port()
        add_service(h, "vps-r", "alpha", h.make_repo("alpha", p1), p1)
        h.open_incident("vps-r")
        sshd_config = (tmp_path / "sshd_config_copy").read_bytes()

        args = ["recover", "vps-r"] + (["--reprovision"] if how == "flag" else [])
        r = h.env.run(*args, timeout=DEADLINE * 6)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        events = parse_lines(r.stdout)
        (why,) = [e for e in events if e["event"] == "recovery_server_unreachable"]
        assert (why["reprovision"], why["reason"]) == (True, "reprovision")
        (trig,) = [e for e in events if e["event"] == "provisioner_trigger_received"]
        assert trig["is_incident_recovery"] is True
        assert playbooks_run(events) == ["provision_access", "provision_software",
                                         "deploy_project"]
        assert (tmp_path / "sshd_config_copy").read_bytes() != sshd_config
        assert (tmp_path / "authorized_keys_provisioned").exists()
        assert "recover_complete" in [e["event"] for e in events]
        assert "recovered vps-r: 1 of 1 services redeployed" in r.stderr
        assert h.env.sql("SELECT status FROM incidents") == [("resolved",)]
        assert h.env.sql("SELECT status FROM servers") == [("in_use",)]
        assert_running(h, "alpha", p1)
    finally:
        h.close()


@pytest.mark.parametrize("flags", [[], ["--reprovision"]])
@pytest.mark.parametrize("kind", ["hostkey_mismatch", "hostkey_unknown"])
def test_recover_on_a_host_key_failure_never_reprovisions(tmp_path, kind, flags):
    """A host key that changed (or, with strict, is unknown) is not fixed by
    reprovisioning over the same SSH: even with --reprovision nothing is
    reprovisioned, and the error names the command that fixes it."""
    known_hosts = tmp_path / "known_hosts"
    h = AnsibleHost(tmp_path, policy="accept-new" if kind == "hostkey_mismatch" else "strict",
                    known_hosts=known_hosts)
    try:
        if kind == "hostkey_mismatch":
            keygen(tmp_path / "other_host_key")
            kt, key = (tmp_path / "other_host_key.pub").read_text().split()[:2]
            known_hosts.write_text(f"[127.0.0.1]:{h.sshd.port} {kt} {key}\n")
        else:
            known_hosts.write_text("")
        h.add_server("vps-h", status="in_use")
        p1 = free_port()
        add_service(h, "vps-h", "alpha", h.make_repo("alpha", p1), p1)
        h.open_incident("vps-h")
        sshd_config = (tmp_path / "sshd_config_copy").read_bytes()

        r = h.env.run("recover", "vps-h", *flags)
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr
        events = parse_lines(r.stdout)
        names = [e["event"] for e in events]
        assert "provisioner_trigger_received" not in names
        assert playbooks_run(events) == []
        assert (tmp_path / "sshd_config_copy").read_bytes() == sshd_config
        (why,) = [e for e in events if e["event"] == "recovery_server_unreachable"]
        assert (why["reprovision"], why["reason"], why["ssh_error_type"]) == \
            (False, "hostkey", kind)
        offered = subprocess.run(["ssh-keygen", "-lf", f"{h.sshd.host_key}.pub"], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
        assert why["fingerprint"] == offered
        (failed,) = [e for e in events if e["event"] == "recover_failed"]
        assert failed["error_type"] == kind
        assert offered in failed["error"]
        assert "not reprovisioned" in failed["error"]
        assert "fleetkeeper known-hosts scan vps-h --accept" in failed["error"]
        assert "fleetkeeper known-hosts scan vps-h --accept" in r.stderr
    finally:
        h.close()


@pytest.mark.parametrize("flags", [[], ["--reprovision"]])
def test_recover_without_services_is_a_no_op(tmp_path, flags):
    """No services recorded: exit 0, "nothing to redeploy", no SSH test and
    no reprovisioning even of a server that is down, and its open incident
    is left as it is (it used to fail with "1 of 0 services not
    redeployed" and the incident failed)."""
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-0", status="in_use")
        h.open_incident("vps-0")
        h.sshd.stop()
        r = h.env.run("recover", "vps-0", *flags)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        assert "no services recorded for vps-0; nothing to redeploy" in r.stderr
        assert "of 0 services" not in r.stdout + r.stderr
        events = parse_lines(r.stdout)
        names = [e["event"] for e in events]
        for ev in ("ssh_connection_test", "incident_recovery_start",
                   "provisioner_trigger_received", "recover_failed", "recover_complete"):
            assert ev not in names, ev
        (skip,) = [e for e in events if e["event"] == "incident_recovery_skipped"]
        assert skip["reason"] == "no_services"
        assert skip["message"] == "no services recorded for vps-0; nothing to redeploy"
        (done,) = [e for e in events if e["event"] == "recover_skipped"]
        assert done["reason"] == "no_services"
        assert h.env.sql("SELECT task, status FROM task_runs") == [("recover", "skipped")]
        assert h.env.sql("SELECT status FROM incidents") == [("detected",)]
        assert h.env.sql("SELECT status, previous_status FROM servers") == [("error", "in_use")]
    finally:
        h.close()


def test_successful_recovery_brings_the_server_back(tmp_path):
    """A successful recovery moves the server to its previous status: ready
    after an incident of a ready server; a server that was never set up as
    far as the store knows (pending_setup, as inventory servers used to
    enter) runs its services now and is in_use (it used to stay
    pending_setup)."""
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-ready")
        h.add_server("vps-new", status="pending_setup")
        p1, p2 = free_port(), free_port()
        add_service(h, "vps-ready", "alpha", h.make_repo("alpha", p1), p1)
        add_service(h, "vps-new", "beta", h.make_repo("beta", p2), p2)
        h.open_incident("vps-ready", previous="ready")

        cases = (("vps-ready", "error", "ready"), ("vps-new", "pending_setup", "in_use"))
        outputs = {}
        for handle, _, _ in cases:
            r = h.env.run("recover", handle)
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr
            outputs[handle] = r.stdout
        assert h.env.sql("SELECT handle, status FROM servers ORDER BY handle") == \
            [("vps-new", "in_use"), ("vps-ready", "ready")]
        assert h.env.sql("SELECT status FROM incidents") == [("resolved",)]
        for handle, before, after in cases:
            (moved,) = [e for e in parse_lines(outputs[handle])
                        if e["event"] == "server_status_restored"]
            assert (moved["server_handle"], moved["from_status"], moved["status"]) == \
                (handle, before, after)
    finally:
        h.close()


def test_recover_follow_prints_the_log_format(tmp_path, daemons):
    """recover --follow under LOG_FORMAT=console prints console lines (it
    printed the stored JSON whatever the format), with the events' own
    timestamps."""
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-c", status="in_use")
        d = daemons(h.env)
        d.wait_for("scheduler_started")
        r = h.env.run("recover", "vps-c", "--follow",
                      env=base_env(**h.env.extra_env, LOG_FORMAT="console"))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith("run_id=")
        body = lines[1:]
        assert body and not any(line.lstrip().startswith("{") for line in body), body
        d.wait_for("recover_skipped")
        stored = {e["event"]: e for e in d.events if e.get("task") == "recover"}
        for ev in ("recover_start", "incident_recovery_skipped", "recover_skipped"):
            (line,) = [ln for ln in body if re.search(rf"\] {ev} ", ln + " ")]
            m = re.match(r"(\S+) \[(\w+) *\] (\S+) +\[(\S+)\]", line)
            assert m, line
            assert m.group(1) == stored[ev]["timestamp"]
            assert (m.group(2), m.group(3), m.group(4)) == \
                (stored[ev]["level"], ev, stored[ev]["logger"])
            assert f"correlation_id={stored[ev]['correlation_id']}" in line
        (skip,) = [ln for ln in body if "incident_recovery_skipped" in ln]
        assert "reason=no_services" in skip
        assert "message='no services recorded for vps-c; nothing to redeploy'" in skip
    finally:
        h.close()


def test_services_add_and_rm_say_what_they_did(tmp_path):
    """services add / rm print what was done (they printed nothing); --json
    gives one object. Env values are never printed."""
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-s")
        r = h.env.run("services", "add", "vps-s", "web", "--repo", "file:///r.git", "--port",
                      "8080", "--env", "TOKEN=t0psecret", "--env", "MODE=x")
        assert r.returncode == 0, r.stderr
        assert r.stdout == ("added service web on vps-s: repo file:///r.git, ref HEAD, "
                            "port 8080, env TOKEN MODE\n")
        r = h.env.run("services", "add", "vps-s", "web", "--repo", "file:///r2.git", "--ref",
                      "v2", "--env", "TOKEN=t0psecret", "--json")
        assert r.returncode == 0, r.stderr
        o = json.loads(r.stdout)
        assert (o["action"], o["server"], o["name"], o["git_repo"], o["ref"], o["env_keys"]) \
            == ("updated", "vps-s", "web", "file:///r2.git", "v2", ["TOKEN"])
        assert "t0psecret" not in r.stdout
        r = h.env.run("services", "add", "vps-s", "api", "--repo", "file:///a.git")
        assert r.stdout == "added service api on vps-s: repo file:///a.git, ref HEAD\n"

        r = h.env.run("services", "rm", "vps-s", "web")
        assert (r.returncode, r.stdout) == (0, "removed service web from vps-s\n"), r.stderr
        r = h.env.run("services", "rm", "vps-s", "api", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"action": "removed", "server": "vps-s", "name": "api"}
        r = h.env.run("services", "rm", "vps-s", "api")
        assert r.returncode == 1 and r.stdout == ""
        assert "no service 'api' on server 'vps-s'" in r.stderr
        r = h.env.run("services", "add", "vps-none", "x", "--repo", "file:///x.git")
        assert r.returncode == 2 and r.stdout == ""
    finally:
        h.close()
