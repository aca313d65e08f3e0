"""Operators in the state directory's group (issue 19, docs/packaging.md,
"Operators"): when the state and runtime directory admits its group
(g+rx, as the package's /var/lib/fleetkeeper and /run/fleetkeeper), the
store is created 0640 and the control socket 0660, so a member of the group
reads the store (with and without a daemon running) and drives the daemon
(status, trigger); anyone else is refused with a message that says who may.
A private directory (0700, the build directory's ./var) keeps everything
0600. Needs root (users and groups are created for the test)."""
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BIN, ON_PG, Daemon, Env, base_env, wait_until

# Per backend: scripts/test.sh runs the two backends' suites at once, and
# each creates and deletes these users and group.
_SUFFIX = "-pg" if ON_PG else ""
GROUP, OPERATOR, OTHER = "fkt-ops" + _SUFFIX, "fkt-op" + _SUFFIX, "fkt-other" + _SUFFIX
TASKS = """
[task.hello]
type = command
command = echo hi
schedule = @every 1h
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd)")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def accounts():
    subprocess.run(["groupadd", "-f", GROUP], check=True)
    for user, groups in ((OPERATOR, ["-G", GROUP]), (OTHER, [])):
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-M", "-s", "/bin/sh", *groups, user], check=True)
    yield
    for user in (OPERATOR, OTHER):
        subprocess.run(["userdel", user], capture_output=True)
    subprocess.run(["groupdel", GROUP], capture_output=True)


@pytest.fixture
def shared_env(accounts):
    """A state directory 2750 root:fkt-ops (setgid: its files get the group,
    as the daemon user's own group does under the package)."""
    top = Path(tempfile.mkdtemp(prefix="fk_group_"))
    os.chmod(top, 0o755)
    env = Env(top)
    env.state.mkdir()
    shutil.chown(env.state, group=GROUP)
    os.chmod(env.state, 0o2750)
    env.write_config(TASKS)
    os.chmod(env.conf, 0o644)
    yield env
    shutil.rmtree(top, ignore_errors=True)


def as_user(env, user, *args):
    return subprocess.run(["runuser", "-u", user, "--", BIN, "-c", str(env.conf), *args],
                          capture_output=True, text=True, env=base_env(), cwd="/", timeout=60)


def test_an_operator_reads_the_store_and_drives_the_daemon(shared_env):
    env = shared_env
    r = env.run("once", "hello")
    assert r.returncode == 0, r.stderr
    if not ON_PG:  # PostgreSQL's roles, not file modes, say who reads its store
        assert mode(env.db) == 0o640
        assert not Path(str(env.db) + "-shm").exists()  # no daemon: nothing open

    # no daemon, no -shm, and no right to create one: read as it is
    r = as_user(env, OPERATOR, "runs")
    assert r.returncode == 0, r.stderr
    assert "hello" in r.stdout and "success" in r.stdout

    d = Daemon(env)
    try:
        d.wait_for("scheduler_started")
        assert mode(env.sock) == 0o660
        for suffix in () if ON_PG else ("-wal", "-shm"):
            assert mode(str(env.db) + suffix) == 0o640, suffix
        r = as_user(env, OPERATOR, "status")
        assert r.returncode == 0, r.stderr
        assert "running" in r.stdout
        r = as_user(env, OPERATOR, "trigger", "hello")
        assert r.returncode == 0, r.stderr
        d.wait_for("hello_complete")
        # while the daemon writes: a reader of its -wal through the -shm
        r = as_user(env, OPERATOR, "runs")
        assert r.returncode == 0, r.stderr
        assert "manual" in r.stdout

        # (on PostgreSQL `runs` reads the database, whose roles decide)
        for cmd in (["status"], ["trigger", "hello"]) + (() if ON_PG else (["runs"],)):
            r = as_user(env, OTHER, *cmd)
            assert r.returncode != 0, (cmd, r.stdout)
            assert "Permission denied" in r.stderr, (cmd, r.stderr)
            assert f"members of group {GROUP}" in r.stderr, (cmd, r.stderr)
    finally:
        d.stop()


def test_a_private_directory_stays_private(accounts, env, daemons):
    env.write_config(TASKS)
    d = daemons(env)
    d.wait_for("scheduler_started")
    assert mode(env.state) == 0o700
    assert mode(env.sock) == 0o600
    if ON_PG:  # the rest is the SQLite file's
        return
    wait_until(lambda: Path(str(env.db) + "-wal").exists(), what="the -wal file")
    for suffix in ("", "-wal", "-shm"):
        assert mode(str(env.db) + suffix) == 0o600, suffix


@pytest.mark.sqlite_only("the store file's group and mode")
def test_an_existing_private_store_is_shared_when_the_directory_admits_the_group(shared_env):
    env = shared_env
    os.chmod(env.state, 0o700)
    assert env.run("once", "hello").returncode == 0
    assert mode(env.db) == 0o600
    # as the package's daemon user, whose own group is the directory's
    shutil.chown(env.db, group=GROUP)
    os.chmod(env.state, 0o2750)  # e.g. an upgrade from a version that kept it 0600
    r = env.run("once", "hello")
    assert r.returncode == 0, r.stderr
    assert '"state_permissions_shared"' in r.stdout
    assert mode(env.db) == 0o640
    r = as_user(env, OPERATOR, "runs")
    assert r.returncode == 0 and r.stdout.count(" hello ") == 2, r.stdout + r.stderr
