"""The daemon's prune (issue 16): batched deletes of everything past its
retention, the store_pruned event, auto_vacuum, and `store vacuum`."""
import os
import time

import pytest

from conftest import ON_PG

TASKS = """
[task.hello]
type = command
schedule = @every 1h
command = echo hello
"""

OLD_EVENTS = 4500  # more than two batches (RETENTION_BATCH_ROWS = 2000)


def fill_old_rows(env, now):
    old = now - 40 * 86400
    con = env.connect()
    with con:
        con.execute("INSERT INTO servers (handle, created_at, updated_at) VALUES ('web-1', ?, ?)",
                    (old, old))
        sid = con.execute("SELECT id FROM servers WHERE handle = 'web-1'").fetchone()[0]
        con.execute(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?)"
            " INSERT INTO events (unix_time, timestamp, level, event, correlation_id, line)"
            " SELECT ? + i, 't', 'info', 'old_event', 'old', '{}' FROM c", (OLD_EVENTS, old))
        con.execute("INSERT INTO events (unix_time, timestamp, level, event, line)"
                    " VALUES (?, 't', 'info', 'new_event', '{}')", (now - 60,))
        con.execute("INSERT INTO task_runs (task, trigger, status, correlation_id, started_at,"
                    " finished_at) VALUES ('hello', 'schedule', 'success', 'o', ?, ?)",
                    (old, old + 1))
        # health_history: 3 hours past check_history_days, 2 hours with samples
        # past check_history_raw_hours (48 h), 1 recent hour
        hours = [int(old) // 3600 * 3600 + 3600 * k for k in range(3)]
        hours += [int(now) // 3600 * 3600 - 3600 * k for k in (60, 61, 1)]
        for h in hours:
            con.execute("INSERT INTO health_history (server_id, hour, checks, failures, rt_sum_ms,"
                        " samples) VALUES (?, ?, 1, 0, 5, '1:5;')", (sid, h))
    con.close()


def test_prune_deletes_old_rows_in_batches_and_reports(env, daemons):
    env.write_config(TASKS)
    assert env.run("once", "hello").returncode == 0
    now = time.time()
    fill_old_rows(env, now)
    d = daemons(env)
    e = d.wait_for("store_pruned")[0]
    assert e["events_deleted"] == OLD_EVENTS
    assert e["runs_deleted"] == 1
    assert e["health_hours_deleted"] == 3
    assert e["health_hours_downsampled"] == 2
    assert e["batches"] >= 3 + 5  # events in 3, one per other kind at least
    assert 0 < e["longest_batch_ms"] < 5000
    assert e["retention_days"] == 30 and e["check_history_days"] == 30
    assert e["check_history_raw_hours"] == 48
    assert env.sql("SELECT event FROM events WHERE event IN ('old_event', 'new_event')") == [
        ("new_event",)]
    assert env.sql("SELECT count(*) FROM health_history") == [(3,)]
    assert env.sql("SELECT count(*) FROM health_history WHERE samples IS NULL") == [(2,)]
    if not ON_PG:
        assert env.sql("PRAGMA auto_vacuum") == [(2,)]  # incremental


def make_v5_style_store(env):
    """A store whose file was made before auto_vacuum (NONE), as v5 made them."""
    os.makedirs(env.state, mode=0o700, exist_ok=True)
    con = env.connect()
    con.execute("PRAGMA journal_mode=WAL")  # writes page 1: auto_vacuum stays NONE
    con.close()
    os.chmod(env.db, 0o600)
    assert env.run("once", "hello").returncode == 0
    assert env.sql("PRAGMA auto_vacuum") == [(0,)]


@pytest.mark.sqlite_only("the file's auto_vacuum mode")
def test_small_old_store_is_converted_at_start(env, daemons):
    env.write_config(TASKS)
    make_v5_style_store(env)
    runs = env.sql("SELECT count(*) FROM task_runs")
    d = daemons(env)
    e = d.wait_for("store_vacuumed")[0]
    assert e["auto_vacuum"] == "incremental"
    assert env.sql("PRAGMA auto_vacuum") == [(2,)]
    assert env.sql("SELECT count(*) FROM task_runs") == runs


@pytest.mark.sqlite_only("store vacuum rewrites the file")
def test_store_vacuum_converts_and_refuses_a_running_daemon(env, daemons):
    env.write_config(TASKS)
    make_v5_style_store(env)
    r = env.run("store", "vacuum")
    assert r.returncode == 0, r.stderr
    assert "auto_vacuum incremental" in r.stdout.splitlines()[-1]
    assert env.sql("PRAGMA auto_vacuum") == [(2,)]
    d = daemons(env)
    d.wait_for("scheduler_started")
    r = env.run("store", "vacuum")
    assert r.returncode != 0
    assert "daemon is running" in r.stderr
