"""Wall-clock jumps (issue 8): a jump forward over many cron fire times gives
one catch-up run and then the normal schedule; a jump back never runs a fire
time again; an interval keeps its cadence through both. The daemon's wall
clock is moved with libfaketime (see fakeclock.py); the machine's clock is
never set."""
import pytest

from conftest import DEADLINE
from fakeclock import FakeClock, StampedDaemon, have_libfaketime, next_minute, unix

pytestmark = pytest.mark.skipif(
    not have_libfaketime(), reason="libfaketime not installed (scripts/setup-deps.sh test)"
)

TASKS = """
[task.minutely]
type = command
schedule = * * * * *
command = true

[task.tick]
type = command
schedule = @every 2s
command = true
"""

HOURS = 3


@pytest.fixture
def clocked(env, tmp_path):
    started = []

    def start(clock):
        env.write_config(TASKS, log_level="debug")
        d = StampedDaemon(env, extra_env=clock.env())
        started.append(d)
        d.wait_for("scheduler_started")
        # Both tasks armed: the daemon has taken its clock baseline.
        d.wait_for("task_scheduled", count=2)
        return d

    yield start
    for d in started:
        err = d.stop()
        assert "Sanitizer" not in err and "runtime error" not in err, err


def starts(d, task, since=0):
    with d.lock:
        return [e for e in d.events[since:] if e.get("event") == f"{task}_start"]


def mark(d):
    with d.lock:
        return len(d.events)


def detect_jump(d, env, seen):
    """Wake the loop (a control request) and wait for it to report the jump."""
    env.run("status")
    try:
        return d.wait_for("wall_clock_changed", count=seen + 1)[-1]
    except AssertionError as e:
        with d.lock:
            stamps = [(ev.get("event"), ev.get("timestamp")) for ev in d.events[-4:]]
        raise AssertionError(f"{e}; last events {stamps}") from None


def wait_ticks(d, since, n):
    """Wait for n runs of the 2 s interval after event index `since`: the
    observation window, measured by the daemon's own monotonic schedule."""
    d.wait_for(lambda e: e.get("event") == "tick_start", count=len(starts(d, "tick")) -
               len(starts(d, "tick", since)) + n, deadline=DEADLINE + 2 * n, what="tick_start")


def assert_cadence(d, since, min_gaps):
    rx = [e["_rx"] for e in starts(d, "tick", since)]
    gaps = [b - a for a, b in zip(rx, rx[1:])]
    assert len(gaps) >= min_gaps, gaps
    mean = (rx[-1] - rx[0]) / len(gaps)
    # Arrival times carry the test's own scheduling noise, not the daemon's.
    assert 1.6 <= mean <= 2.4, gaps
    assert max(gaps) < 4.5, gaps


def minutely_rows(env):
    return env.sql("SELECT trigger, status FROM task_runs WHERE task = 'minutely' ORDER BY id")


def last_fire(env):
    rows = env.sql("SELECT last_fire_at FROM task_state WHERE task = 'minutely'")
    return rows[0][0] if rows else None


def test_jump_forward_hours_gives_one_catchup_then_the_schedule(env, clocked, tmp_path):
    clock = FakeClock(tmp_path / "faketime")
    # 5 s past a minute: the first fire time is 55 s away, long after the jump.
    clock.jump_to(next_minute(clock.now()) + 5)
    d = clocked(clock)
    first = unix(d.wait_for(lambda e: e.get("event") == "task_scheduled" and
                            e.get("task") == "minutely")[0]["next_run"])
    assert first % 60 == 0

    # Three hours later, 10 s before a fire time: 180 fire times passed.
    boundary = first + HOURS * 3600
    jump_at = mark(d)
    clock.jump_to(boundary - 10)
    change = detect_jump(d, env, 0)
    assert change["detected_by"] == "offset"
    assert HOURS * 3600 - 120 < change["step_sec"] < HOURS * 3600 + 120

    catchup = d.wait_for("task_catchup")[0]
    assert catchup["task"] == "minutely"
    assert unix(catchup["missed_fire"]) == first
    assert catchup["missed_fires"] == HOURS * 60  # first .. boundary - 60
    run = d.wait_for(lambda e: e.get("event") == "minutely_start")[0]
    assert run["trigger"] == "catchup"

    # Then the normal schedule: the next fire time is the boundary.
    d.wait_for(lambda e: e.get("event") == "minutely_start", count=2, deadline=DEADLINE + 10)
    env.wait_sql("SELECT last_fire_at FROM task_state WHERE task = 'minutely'",
                 lambda rows: rows and rows[0][0] == boundary)
    after_boundary = mark(d)
    wait_ticks(d, after_boundary, 3)  # a quiet window: no burst follows

    assert [e["trigger"] for e in starts(d, "minutely")] == ["catchup", "schedule"]
    assert not d.named("task_skipped")
    env.wait_sql("SELECT count(*) FROM task_runs WHERE task = 'minutely' AND status = 'running'",
                 lambda rows: rows[0][0] == 0)
    assert minutely_rows(env) == [("catchup", "success"), ("schedule", "success")]
    assert_cadence(d, 0, 5)
    assert len(starts(d, "tick", jump_at)) >= 4


def test_jump_back_never_repeats_a_fire_time(env, clocked, tmp_path):
    clock = FakeClock(tmp_path / "faketime")
    clock.jump_to(next_minute(clock.now()) - 8)  # a fire time 8 s away
    d = clocked(clock)
    d.wait_for(lambda e: e.get("event") == "minutely_start", deadline=DEADLINE + 60)
    fired = env.wait_sql("SELECT last_fire_at FROM task_state WHERE task = 'minutely'",
                         lambda rows: rows and rows[0][0])[0][0]
    assert fired % 60 == 0

    # Ten minutes back, 5 s before a fire time that lies before the one run.
    # Then 5 s before the fire time already run. Neither may fire.
    for n, target in enumerate((fired - 600 - 5, fired - 5)):
        since = mark(d)
        before = clock.now()
        clock.jump_to(target)
        change = detect_jump(d, env, n)
        assert abs(change["step_sec"] - (target - before)) < 5, change
        sched = d.wait_for(lambda e: e.get("event") == "task_scheduled" and
                           e.get("task") == "minutely", count=1 + n)[-1]
        assert unix(sched["next_run"]) == fired + 60
        wait_ticks(d, since, 5)  # 10 s: past the fire time a naive daemon would take
        assert starts(d, "minutely", since) == []

    # Back to just before the next fire time: it fires once, on schedule.
    since = mark(d)
    clock.jump_to(fired + 55)
    detect_jump(d, env, 2)
    run = d.wait_for(lambda e: e.get("event") == "minutely_start", count=2,
                     deadline=DEADLINE + 10)[-1]
    assert run["trigger"] == "schedule"
    env.wait_sql("SELECT last_fire_at FROM task_state WHERE task = 'minutely'",
                 lambda rows: rows and rows[0][0] == fired + 60)
    wait_ticks(d, mark(d), 2)
    assert len(starts(d, "minutely", since)) == 1
    assert not d.named("task_catchup")
    assert [t for t, _ in minutely_rows(env)] == ["schedule", "schedule"]
    assert_cadence(d, 0, 12)
