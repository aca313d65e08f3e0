"""The state store file itself: who may read it, damage refused at start,
`store check`, `store backup` (issue 15, items 5 and 6)."""
import json
import os
import sqlite3
import stat

import pytest

from conftest import ON_PG, base_env

TASKS = """
[task.hello]
type = command
schedule = @every 1h
command = echo hello
"""


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def run_once(env, umask=0o022):
    old = os.umask(umask)
    try:
        return env.run("once", "hello")
    finally:
        os.umask(old)


@pytest.mark.sqlite_only("the store file's mode")
def test_new_state_is_private_under_a_permissive_umask(env):
    env.write_config(TASKS)
    r = run_once(env)
    assert r.returncode == 0, r.stderr
    assert mode(env.state) == 0o700
    assert mode(env.db) == 0o600
    for suffix in ("-wal", "-shm"):
        p = str(env.db) + suffix
        if os.path.exists(p):
            assert mode(p) == 0o600, p


@pytest.mark.sqlite_only("the store file's mode")
def test_existing_open_state_is_tightened_and_said(env):
    env.write_config(TASKS)
    assert run_once(env).returncode == 0
    os.chmod(env.state, 0o755)
    os.chmod(env.db, 0o644)
    r = run_once(env)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    tightened = {e["path"]: e for e in events if e["event"] == "state_permissions_tightened"}
    assert tightened[str(env.state)]["old_mode"] == 0o755
    assert tightened[str(env.state)]["new_mode"] == 0o750
    # the directory now admits its group (g+rx): the store is group-readable,
    # never more (docs/packaging.md, "Operators")
    assert tightened[str(env.db)]["new_mode"] == 0o640
    assert mode(env.state) == 0o750 and mode(env.db) == 0o640
    # the second time there is nothing to say
    r = run_once(env)
    assert "state_permissions_tightened" not in r.stdout


def damage(db, pages=range(2, 6), page_size=4096):
    with open(db, "r+b") as f:
        for p in pages:
            f.seek((p - 1) * page_size)
            f.write(b"\xa5" * page_size)


@pytest.mark.sqlite_only("damaged pages of the file")
def test_damaged_store_is_refused_with_how_to_recover(env):
    env.write_config(TASKS)
    assert run_once(env).returncode == 0
    # checkpoint so that the pages are in the main file, then damage them
    con = env.connect()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    damage(env.db)
    before = open(env.db, "rb").read()

    r = env.run("run", timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert str(env.db) in r.stderr
    assert "damaged" in r.stderr and "fleetkeeper store check" in r.stderr
    assert "store backup" in r.stderr
    r = run_once(env)
    assert r.returncode == 1 and "damaged" in r.stdout + r.stderr
    assert open(env.db, "rb").read() == before, "a refused store must not be written"

    r = env.run("store", "check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "problem" in r.stdout
    r = env.run("store", "check", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["ok"] is False and out["problems"]


@pytest.mark.sqlite_only("store check is PRAGMA integrity_check")
def test_store_check_of_an_intact_store(env):
    env.write_config(TASKS)
    assert run_once(env).returncode == 0
    r = env.run("store", "check")
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
    r = env.run("store", "check", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True


@pytest.mark.sqlite_only("store backup copies the file")
def test_backup_while_the_daemon_runs(env, daemons):
    env.write_config(TASKS.replace("@every 1h", "@every 1s"))
    d = daemons(env)
    d.wait_for("hello_complete", count=2)
    dest = env.dir / "backup.db"
    old = os.umask(0o022)
    try:
        r = env.run("store", "backup", str(dest))
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert mode(dest) == 0o600
    con = sqlite3.connect(f"file:{dest}?mode=ro", uri=True)
    runs = con.execute("SELECT count(*) FROM task_runs WHERE task = 'hello'").fetchone()[0]
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    assert runs >= 2
    assert not [p for p in os.listdir(env.dir) if ".tmp-" in p]
    # and again over the same name (a nightly backup job)
    assert env.run("store", "backup", str(dest)).returncode == 0


def test_store_command_usage_errors(env):
    env.write_config(TASKS)
    for args in (["store"], ["store", "frobnicate"], ["store", "backup"],
                 ["store", "check", "extra"]):
        r = env.run(*args)
        assert r.returncode == 2, (args, r.returncode)
        assert "store" in r.stderr
    if ON_PG:  # the rest is about copying the SQLite file
        return
    r = env.run("store", "backup", "/nonexistent-dir/x.db")
    assert r.returncode in (1, 2)
    assert "/nonexistent-dir/x.db" in r.stderr or "no state store" in r.stderr


def start_with_metrics(env, daemons):
    from prom import free_port
    port = free_port()
    env.write_config(TASKS.replace("@every 1h", "@every 1s"), metrics_listen=f"127.0.0.1:{port}")
    d = daemons(env)
    d.wait_for("hello_complete")
    return d, f"http://127.0.0.1:{port}"


def healthz(base):
    from prom import http_get
    status, body = http_get(base + "/healthz")
    return status, json.loads(body)


@pytest.mark.sqlite_only("the file deleted under the daemon")
def test_deleted_store_file_is_noticed(env, daemons):
    d, base = start_with_metrics(env, daemons)
    assert healthz(base)[0] == 200
    os.unlink(env.db)
    d.wait_for(lambda e: e.get("event") == "store_file_replaced" and e.get("level") == "critical",
               what="store_file_replaced")
    status, body = healthz(base)
    assert status == 503 and body["store"] is False
    assert "deleted" in body["store_error"]


@pytest.mark.sqlite_only("the file replaced under the daemon")
def test_replaced_store_file_is_noticed(env, daemons):
    d, base = start_with_metrics(env, daemons)
    other = env.dir / "other.db"
    sqlite3.connect(other).close()
    os.rename(other, env.db)
    d.wait_for("store_file_replaced")
    status, body = healthz(base)
    assert status == 503 and "replaced" in body["store_error"]
