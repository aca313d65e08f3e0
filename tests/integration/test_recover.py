"""Incident recovery (`fleetkeeper recover`) with the real ansible-playbook
against the loopback sshd: in process, and through a running daemon with
--follow."""
import os
import socket

import pytest

from conftest import parse_lines, DEADLINE, wait_until
from fk_ansible import AnsibleHost, needs_ansible, free_port

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
    stays down, so the reprovisioning fails and so does the incident)."""
    h = AnsibleHost(tmp_path, extra_tasks="[task.health_check]\nfailure_threshold = 1\n"
                                          "auto_recover = true\ncheck_timeout = 3s\n")
    try:
        h.add_server("vps-a", status="in_use")
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


FAIL_END = ("CREATE TRIGGER fail_end BEFORE UPDATE OF status ON incidents"
            " WHEN NEW.status IN ('resolved', 'failed')"
            " BEGIN SELECT RAISE(ABORT, 'store unavailable'); END")


def test_recover_errors_are_reported_once_with_their_type(tmp_path):
    """A store failure at the end of a recovery is reported once, by the
    run, as error_type store (it used to be logged as recovery_store_failed
    and then reported again as not_found); an unknown server is not_found."""
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-s", status="in_use")
        h.open_incident("vps-s")
        h.exec_sql(FAIL_END)
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
