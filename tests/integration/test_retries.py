"""Task retries (issue 14): `retries = N`, `retry_backoff`, `retry_backoff_max`.

A retry is its own task_runs row (trigger `retry`, `attempt` 2..N+1) sharing
the first run's correlation_id; `failure_alert_after` counts a run and its
retries as one failure, judged when the last attempt ends. The command
tasks here count their runs in a file and fail until the Nth, and the
backoffs are a fraction of a second, so nothing waits long; every wait is
on rows or events with a deadline.
"""
import json
import signal

from conftest import parse_lines


def counting_command(env, succeed_at):
    """A command that counts its runs in a file and fails until its
    succeed_at-th run (0: never succeeds)."""
    script = env.dir / "count.sh"
    counter = env.dir / "count"
    script.write_text(f"n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); echo $n > {counter}\n"
                      f"test {succeed_at} -ne 0 -a $n -ge {succeed_at}\n")
    return f"sh {script}"


def runs(env, task):
    return env.sql("SELECT attempt, trigger, status, correlation_id FROM task_runs"
                   " WHERE task = ? ORDER BY id", task)


def failing_notes(env):
    return env.sql("SELECT correlation_id, fields FROM notifications"
                   " WHERE kind = 'task_failing' ORDER BY id")


def retried(task):
    return lambda e: e.get("event") == "task_retry_scheduled" and e.get("task") == task


def task_section(name, command, extra=""):
    return f"""[task.{name}]
type = command
command = {command}
run_on_start = true
retries = 2
retry_backoff = 200ms
retry_backoff_max = 400ms
failure_alert_after = 1
{extra}
"""


def test_fails_twice_then_succeeds_three_rows_no_alert(env, daemons):
    env.write_config(task_section("flaky", counting_command(env, 3)))
    d = daemons(env)
    done = d.wait_for("flaky_complete")[0]
    rows = runs(env, "flaky")
    assert [(a, t, s) for a, t, s, _ in rows] == [
        (1, "start", "failed"), (2, "retry", "failed"), (3, "retry", "success")]
    assert len({c for *_, c in rows}) == 1
    cid = rows[0][3]
    assert done["correlation_id"] == cid and done["run_id"] == env.sql(
        "SELECT max(id) FROM task_runs WHERE task = 'flaky'")[0][0]

    scheduled = d.wait_for(retried("flaky"), count=2)
    assert [(e["attempt"], e["correlation_id"]) for e in scheduled] == [(2, cid), (3, cid)]
    # Exponential, capped, with jitter in [delay/2, delay]: 200ms then 400ms.
    assert 0.1 <= scheduled[0]["delay_sec"] <= 0.2
    assert 0.2 <= scheduled[1]["delay_sec"] <= 0.4
    starts = d.named("flaky_start")
    assert [(e["attempt"], e["trigger"]) for e in starts] == [
        (1, "start"), (2, "retry"), (3, "retry")]
    assert failing_notes(env) == []

    out = parse_lines(env.run("runs", "--task", "flaky", "--json").stdout)
    assert [(r["attempt"], r["attempts"]) for r in out] == [(3, 3), (2, 3), (1, 3)]
    table = env.run("runs", "--task", "flaky").stdout.splitlines()
    assert "ATTEMPT" in table[0].split()
    assert [line.split()[4] for line in table[1:]] == ["3/3", "2/3", "1/3"]


def test_every_attempt_fails_one_alert(env, daemons):
    env.write_config(task_section("broken", counting_command(env, 0)))
    d = daemons(env)
    d.wait_for("broken_failed", count=3)
    rows = env.wait_sql("SELECT attempt, status, correlation_id FROM task_runs"
                        " WHERE task = 'broken' ORDER BY id",
                        lambda r: len(r) == 3 and r[-1][1] == "failed")
    assert [(a, s) for a, s, _ in rows] == [(1, "failed"), (2, "failed"), (3, "failed")]
    cid = rows[0][2]
    assert {c for *_, c in rows} == {cid}
    (note,) = failing_notes(env)
    assert note[0] == cid
    fields = json.loads(note[1])
    assert (fields["streak"], fields["status"]) == (1, "failed")
    assert len(d.named("task_retry_scheduled")) == 2  # none after the last attempt

    # A second run that fails all its attempts extends the streak: no repeat.
    assert env.run("trigger", "broken").returncode == 0
    env.wait_sql("SELECT count(*) FROM task_runs WHERE task = 'broken'"
                 " AND status = 'failed'", lambda r: r[0][0] == 6)
    d.wait_for("broken_failed", count=6)
    assert len(failing_notes(env)) == 1
    assert (env.sql("SELECT count(DISTINCT correlation_id) FROM task_runs"
                    " WHERE task = 'broken'")) == [(2,)]


def test_timeout_is_retried_and_manual_trigger_waits_for_the_retry(env, daemons):
    env.write_config("""[task.slow]
type = command
command = sleep 30
timeout = 300ms
kill_grace = 0
retries = 1
retry_backoff = 1h
""")
    d = daemons(env)
    d.wait_for("scheduler_started")
    assert env.run("trigger", "slow").returncode == 0
    (sched,) = d.wait_for(retried("slow"))
    # 1h, capped at retry_backoff_max (default 10m), jitter: 5 to 10 minutes.
    assert sched["attempt"] == 2 and 300 <= sched["delay_sec"] <= 600
    assert runs(env, "slow")[0][:3] == (1, "manual", "timeout")
    # overlap = skip: a trigger while the retry waits is refused like one
    # while a run is going, and names the pending retry.
    r = env.run("trigger", "slow")
    assert r.returncode == 1 and "retry" in r.stderr, r.stderr
    st = json.loads(env.run("status", "--json").stdout)
    (task,) = [t for t in st["tasks"] if t["name"] == "slow"]
    assert task["retry_attempt"] == 2 and task["retry_at"]

    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    (cancel,) = d.named("task_retry_cancelled")
    assert (cancel["reason"], cancel["attempt"]) == ("shutdown", 2)
    assert cancel["correlation_id"] == sched["correlation_id"]
    assert len(runs(env, "slow")) == 1


HANG = """[task.hang]
type = command
command = sleep 30
retries = 3
retry_backoff = 1ms
"""


def test_interrupted_run_is_not_retried_and_reload_cancels_retry(env, daemons):
    env.write_config(HANG + """
[task.once]
type = command
command = false
retries = 1
retry_backoff = 1h
""", shutdown_grace="300ms")
    d = daemons(env)
    d.wait_for("scheduler_started")
    assert env.run("trigger", "once").returncode == 0
    (sched,) = d.wait_for(retried("once"))
    env.write_config(HANG, shutdown_grace="300ms")
    d.signal(signal.SIGHUP)
    (cancel,) = d.wait_for("task_retry_cancelled")
    assert (cancel["task"], cancel["reason"]) == ("once", "task_removed")
    assert cancel["correlation_id"] == sched["correlation_id"]
    d.wait_for("config_reloaded")

    assert env.run("trigger", "hang").returncode == 0
    d.wait_for("hang_start")
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert runs(env, "hang")[0][:3] == (1, "manual", "interrupted")
    assert not [e for e in d.events if retried("hang")(e)]


def test_queued_run_waits_for_the_last_attempt(env, daemons):
    env.write_config(f"""[task.q]
type = command
command = {counting_command(env, 2)}
overlap = queue
retries = 1
retry_backoff = 300ms
""")
    d = daemons(env)
    d.wait_for("scheduler_started")
    assert env.run("trigger", "q").returncode == 0
    (sched,) = d.wait_for(retried("q"))
    r = env.run("trigger", "q", "--json")
    assert json.loads(r.stdout) == {"queued": True}, (r.stdout, r.stderr)
    (queued,) = d.wait_for("task_queued")
    assert queued["running_correlation_id"] == sched["correlation_id"]
    d.wait_for("q_complete", count=2)
    rows = runs(env, "q")
    assert [(a, t, s) for a, t, s, _ in rows] == [
        (1, "manual", "failed"), (2, "retry", "success"), (1, "manual", "success")]
    assert rows[0][3] == rows[1][3] != rows[2][3]
