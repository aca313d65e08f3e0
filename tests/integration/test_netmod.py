"""The network module (fleetkeeper-net.so, docs/architecture.md): a daemon
maps libcurl, libgit2, libssh2 and libcrypto only once a task needs them,
and without the module it says so and keeps running everything else."""
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, DEADLINE, base_env, parse_lines
from prom import free_port  # a port nothing listens on

NET_LIBS = ("libcurl", "libssh2", "libgit2", "libcrypto", "fleetkeeper-net.so")


def mapped(pid):
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({lib for lib in NET_LIBS if lib in maps})


def test_idle_daemon_maps_no_network_library_until_a_task_needs_one(env, daemons):
    port = free_port()  # nothing listens: the sync fails, after loading the module
    env.write_config(f"""[github]
api_url = http://127.0.0.1:{port}
org = acme
token_env = FK_TEST_GH_TOKEN

[task.hello]
type = command
schedule = @every 1h
run_on_start = true
command = echo hi

[task.github_sync]
schedule = 0 0 1 1 *
""")
    d = daemons(env, extra_env={"FK_TEST_GH_TOKEN": "t0k-netmod"})
    d.wait_for("hello_complete")
    assert mapped(d.proc.pid) == []
    assert env.run("trigger", "github_sync").returncode == 0
    d.wait_for(lambda e: e.get("event") in ("github_sync_failed", "github_sync_complete"),
               what="the github_sync run")
    assert "libcurl" in mapped(d.proc.pid) and "fleetkeeper-net.so" in mapped(d.proc.pid)


def test_without_the_module_network_tasks_fail_clearly_and_the_rest_runs(env, tmp_path):
    lone = tmp_path / "bin" / "fleetkeeper"
    lone.parent.mkdir()
    shutil.copy(BIN, lone)  # the executable without its module beside it
    env.write_config("[task.hello]\ntype = command\ncommand = echo hi\n")

    def run(*args):
        return subprocess.run([str(lone), "-c", str(env.conf), *args], capture_output=True,
                              text=True, timeout=DEADLINE, env=base_env(), cwd=tmp_path)

    probe = run("ssh-test", "127.0.0.1:%d" % free_port(), "--timeout", "2")
    events = parse_lines(probe.stdout)
    failed = [e for e in events if e["event"] == "network_module_failed"]
    if not failed:  # found in the install directory (meson install was run here)
        pytest.skip("a fleetkeeper-net.so is installed system-wide")
    (failed,) = failed
    assert "fleetkeeper-net.so" in failed["error"] and failed["level"] == "error"
    (test,) = [e for e in events if e["event"] == "ssh_connection_test"]
    assert test["success"] is False and test["error_type"] == "internal"
    assert "network module" in test["error"]
    assert probe.returncode == 1
    hello = run("once", "hello")
    assert hello.returncode == 0, hello.stderr
    assert "hello_complete" in [e["event"] for e in parse_lines(hello.stdout)]
