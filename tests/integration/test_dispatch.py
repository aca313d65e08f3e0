"""Top-of-the-minute dispatch (issue 16, item 4): `[daemon] spread` gives each
task a fixed offset derived from its name (the same in `next`, `status` and
every daemon), many fires due together are dispatched in order of their fire
time, and the dispatch latency is on the start event and in /metrics.
The heavy version (1,000 tasks) is bench/dispatch.sh."""
import json

import pytest

from conftest import DEADLINE
from fakeclock import FakeClock, StampedDaemon, have_libfaketime, next_minute, unix
from prom import free_port, http_get


def spread_offset_ms(name, spread_ms):
    """src/spread.c, computed independently: FNV-1a 64 of the name, mixed by
    SplitMix64's finalizer, modulo the window."""
    m = 2**64 - 1
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & m
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & m
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & m
    return (h ^ (h >> 31)) % spread_ms


def next_json(env, task, n=3):
    r = env.run("next", task, "-n", str(n), "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def status_next_run(env, task):
    st = json.loads(env.run("status", "--json").stdout)
    return next(t["next_run"] for t in st["tasks"] if t["name"] == task)


SPREAD_TASKS = """
[task.minutely]
type = command
schedule = * * * * *
command = true

[task.jittery]
type = command
schedule = * * * * *
jitter = 5s
command = true
"""


def test_spread_offset_is_fixed_per_task_in_next_status_and_across_daemons(env, daemons):
    env.write_config(SPREAD_TASKS, daemon_extra="spread = 30s")
    off = spread_offset_ms("minutely", 30000)
    times = next_json(env, "minutely")
    for t in times:  # every fire at the minute plus the same offset
        assert round(t["unix"] * 1000) % 60000 == off, (t, off)
        assert t["next_run"].endswith(".%03d+00:00" % (off % 1000))
    # a task with its own jitter has no offset
    assert all(t["unix"] % 60 == 0 for t in next_json(env, "jittery"))

    seen = []
    for _ in range(2):  # two daemons one after the other: the same offset
        d = daemons(env)
        d.wait_for(lambda e: e.get("event") == "task_scheduled" and e["task"] == "minutely",
                   what="task_scheduled minutely")
        nr = unix(status_next_run(env, "minutely"))
        assert round(nr * 1000) % 60000 == off
        # `next` while the daemon runs agrees with the daemon to the millisecond
        assert round(nr * 1000) in {round(t["unix"] * 1000) for t in next_json(env, "minutely")}
        seen.append(round(nr * 1000) % 60000)
        d.stop()
    assert seen == [off, off]
    # with no daemon, `status` works the next run out itself: with the offset too
    nr = unix(status_next_run(env, "minutely"))
    assert round(nr * 1000) % 60000 == off


N = 50
SPREAD_MS = 1500


@pytest.mark.skipif(not have_libfaketime(),
                    reason="libfaketime not installed (scripts/setup-deps.sh test)")
def test_many_fires_due_together_dispatch_in_fire_time_order(env, tmp_path):
    names = ["burst%02d" % i for i in range(N)]
    offsets = {n: spread_offset_ms(n, SPREAD_MS) for n in names}
    # the file lists them latest offset first: file order is not fire order
    names.sort(key=lambda n: (-offsets[n], n))
    tasks = "".join(f"[task.{n}]\ntype = command\nschedule = * * * * *\ncommand = true\n\n"
                    for n in names)
    port = free_port()
    env.write_config(tasks, daemon_extra="spread = 1500ms",
                     metrics_listen=f"127.0.0.1:{port}")
    clock = FakeClock(tmp_path / "faketime")
    boundary = next_minute(clock.now()) + 60
    clock.jump_to(boundary - 4)  # the minute starts 4 s after the daemon
    d = StampedDaemon(env, extra_env=clock.env())
    try:
        d.wait_for("scheduler_started")
        starts = d.wait_for(lambda e: e.get("event", "").startswith("burst")
                            and e["event"].endswith("_start"), count=N,
                            deadline=DEADLINE + 5, what="50 burst*_start")
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    finally:
        err = d.stop()
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert status == 200
    by_run = sorted(starts, key=lambda e: e["run_id"])
    fire = [unix(e["fire_time"]) for e in by_run]
    for e, f in zip(by_run, fire):
        assert e["trigger"] == "schedule"
        # the fire time is the nominal minute plus the task's own offset
        assert round((f - boundary) * 1000) == offsets[e["task"]], e
        # never before the fire time; the row before the worker
        assert 0 <= e["dispatch_latency_sec"] <= e["start_latency_sec"] < DEADLINE, e
    keys = [(f, e["task"]) for e, f in zip(by_run, fire)]
    assert keys == sorted(keys), "run ids are not in fire-time order"
    rows = env.sql("SELECT id, task FROM task_runs ORDER BY id")
    assert [t for _, t in rows] == [e["task"] for e in by_run]

    def sample(name):
        line = next(ln for ln in body.splitlines() if ln.startswith(name + " "))
        return float(line.rsplit(" ", 1)[1])

    assert sample('fleetkeeper_dispatch_latency_seconds_count{stage="row"}') == N
    assert sample('fleetkeeper_dispatch_latency_seconds_count{stage="start"}') == N
    assert sample('fleetkeeper_dispatch_latency_seconds_bucket{stage="row",le="+Inf"}') == N
