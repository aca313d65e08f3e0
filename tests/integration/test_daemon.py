"""The real daemon: schedules, overlap, timeouts, reload, shutdown, lock,
control socket, trigger --follow, persistent catch-up (issue: scheduler core)."""
import json
import os
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone

from conftest import BIN, DEADLINE, ON_PG, Daemon, base_env, parse_lines, pid_alive, wait_until


def started(d):
    return d.wait_for("scheduler_started")[0]


def test_interval_task_runs_repeatedly(env, daemons):
    env.write_config("[task.tick]\ntype = command\nschedule = @every 1s\ncommand = echo tick\n")
    d = daemons(env)
    started(d)
    first = d.wait_for("tick_complete", count=3)
    assert len({e["correlation_id"] for e in first}) == 3
    assert len({e["run_id"] for e in first}) == 3
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    rows = env.sql("SELECT status, trigger FROM task_runs WHERE task = 'tick'")
    assert len(rows) >= 3 and all(r == ("success", "schedule") for r in rows)
    names = [e["event"] for e in d.events]
    assert names.index("scheduler_workers_configured") < names.index("scheduler_started")
    assert "task_scheduled" in names and names[-1] == "scheduler_stopped"


def test_overlap_skip(env, daemons, tmp_path):
    gate = tmp_path / "gate"
    env.write_config(
        f"[task.slow]\ntype = command\nschedule = @every 1s\n"
        f"command = while [ ! -e {gate} ]; do sleep 0.05; done\n"
    )
    d = daemons(env)
    d.wait_for("slow_start")
    skips = d.wait_for(lambda e: e.get("event") == "task_skipped" and e.get("task") == "slow", count=2)
    assert all(s["reason"] == "still_running" for s in skips)
    gate.touch()
    d.wait_for("slow_complete")
    d.stop()
    statuses = [r[0] for r in env.sql("SELECT status FROM task_runs WHERE task='slow' ORDER BY id")]
    assert statuses.count("skipped") >= 2 and "success" in statuses


def test_overlap_queue_runs_one_pending(env, daemons, tmp_path):
    gate = tmp_path / "gate"
    env.write_config(
        f"[task.q]\ntype = command\noverlap = queue\n"
        f"command = while [ ! -e {gate} ]; do sleep 0.05; done\n"
    )
    d = daemons(env)
    started(d)
    r1 = env.run("trigger", "q", "--json")
    assert r1.returncode == 0, (r1.stderr, d.raw)
    d.wait_for("q_start")
    r2 = env.run("trigger", "q", "--json")
    assert json.loads(r2.stdout) == {"queued": True}
    d.wait_for("task_queued")
    r3 = env.run("trigger", "q")  # one pending at most: this one is skipped
    assert r3.returncode == 1 and "already queued" in r3.stderr
    d.wait_for(lambda e: e.get("event") == "task_skipped" and e.get("reason") == "queue_full")
    gate.touch()
    done = d.wait_for("q_complete", count=2)
    assert done[0]["run_id"] != done[1]["run_id"]
    assert len(d.named("q_start")) == 2


def test_timeout_kills_child_and_grandchild(env, daemons, tmp_path):
    pids = tmp_path / "pids"
    env.write_config(
        f"[task.hang]\ntype = command\ntimeout = 1s\nkill_grace = 1s\n"
        f"command = sleep 300 & echo $! > {pids}; echo $$ >> {pids}; sleep 300\n"
    )
    d = daemons(env)
    started(d)
    t0 = time.monotonic()
    assert env.run("trigger", "hang").returncode == 0
    failed = d.wait_for("hang_failed")[0]
    elapsed = time.monotonic() - t0
    assert failed["error_type"] == "timeout" and failed["status"] == "timeout"
    assert elapsed < 1 + DEADLINE / 3
    assert d.named("task_timeout")
    for pid in map(int, pids.read_text().split()):
        wait_until(lambda: not pid_alive(pid), what=f"pid {pid} gone")
    assert env.sql("SELECT status FROM task_runs WHERE task='hang'") == [("timeout",)]


def test_sighup_with_broken_config_keeps_old(env, daemons):
    env.write_config("[task.tick]\ntype = command\nschedule = @every 1s\ncommand = echo tick\n")
    d = daemons(env)
    d.wait_for("tick_complete")
    good = env.conf.read_text()
    env.conf.write_text(good + "\n[task.broken]\nschedule = 99 * * * *\ntype = command\ncommand = true\n")
    d.signal(signal.SIGHUP)
    failure = d.wait_for("config_reload_failed")[0]
    assert str(env.conf) in failure["error"] and "minute" in failure["error"]
    n = len(d.named("tick_complete"))
    d.wait_for("tick_complete", count=n + 2)  # still scheduling with the old config
    # and a good reload takes effect
    env.conf.write_text(good + "\n[task.tock]\ntype = command\nschedule = @every 1s\ncommand = echo tock\n")
    d.signal(signal.SIGHUP)
    d.wait_for("config_reloaded")
    d.wait_for("tock_complete")


def test_task_removed_while_running_and_added_back(env, daemons, tmp_path):
    """A reload removes a task while it runs, the next one brings it back
    while the run still goes on: the daemon reschedules it (it used to
    dereference the removed slot's configuration)."""
    gate = tmp_path / "gate"
    slow = f"[task.slow]\ntype = command\nschedule = @every 1h\nrun_on_start = true\n" \
           f"command = sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done'\n"
    tick = "[task.tick]\ntype = command\nschedule = @every 1s\ncommand = echo tick\n"
    env.write_config(slow + tick)
    d = daemons(env)
    d.wait_for("slow_start")
    env.conf.write_text(env.conf.read_text().replace(slow, ""))
    d.signal(signal.SIGHUP)
    assert d.wait_for("config_reloaded")[0]["removed"] == 1
    env.write_config(slow + tick)
    d.signal(signal.SIGHUP)
    d.wait_for("config_reloaded", count=2)
    gate.touch()
    d.wait_for("slow_complete")
    n = len(d.named("tick_complete"))
    d.wait_for("tick_complete", count=n + 2)
    assert d.proc.poll() is None


def wait_exit_timed(d, t0):
    """Wait for the daemon's exit; (exit code, seconds since t0)."""
    rc = d.proc.wait(timeout=DEADLINE)
    elapsed = time.monotonic() - t0
    d.wait_exit()
    return rc, elapsed


def event_time(e):
    return datetime.fromisoformat(e["timestamp"]).timestamp()


# What the daemon may add to the grace before it is gone on a loaded 2-core
# machine (sanitizers too): cancelling the run, the child's exit, the last
# rows and events, the exit itself. Much less than the default kill_grace
# (5 s), so a daemon that waited for that would fail.
EXIT_MARGIN = 2.5


def test_sigterm_during_run_exits_0_with_run_interrupted(env, daemons):
    # shutdown_grace 2 s; the command's kill_grace is the default 5 s, but a
    # plain sleep dies on the SIGTERM that starts it: the daemon must exit
    # right after the grace, not before and not a kill_grace later.
    grace = 2.0
    env.write_config("[task.long]\ntype = command\ncommand = sleep 300\n",
                     shutdown_grace="2s")
    d = daemons(env)
    started(d)
    assert env.run("trigger", "long").returncode == 0
    d.wait_for("command_start")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc, elapsed = wait_exit_timed(d, t0)
    assert rc == 0
    assert grace - 0.02 <= elapsed <= grace + EXIT_MARGIN, elapsed
    names = [e["event"] for e in d.events]
    assert names.index("scheduler_shutdown_requested") < names.index(
        "scheduler_shutdown_grace_expired") < names.index("long_failed")
    assert names[-1] == "scheduler_stopped"
    # the daemon's own clock agrees: the run was given the whole grace
    requested = d.named("scheduler_shutdown_requested")[0]
    assert requested["running"] == 1 and requested["shutdown_grace_sec"] == grace
    waited = event_time(d.named("scheduler_shutdown_grace_expired")[0]) - event_time(requested)
    assert grace - 0.02 <= waited <= grace + EXIT_MARGIN, waited
    failed = d.named("long_failed")[0]
    assert failed["status"] == "interrupted"
    assert env.sql("SELECT status FROM task_runs WHERE task='long'") == [("interrupted",)]
    # the events up to scheduler_stopped are in the store
    assert env.sql("SELECT count(*) FROM events WHERE event='scheduler_stopped'") == [(1,)]
    assert env.sql("SELECT count(*) FROM events WHERE event='long_failed'") == [(1,)]


def test_sigterm_with_a_child_ignoring_sigterm_waits_grace_plus_kill_grace(env, daemons):
    # After shutdown_grace the run is cancelled: SIGTERM to its process
    # group, SIGKILL kill_grace later. A child that ignores SIGTERM therefore
    # keeps the daemon for shutdown_grace + kill_grace.
    env.write_config("[task.stubborn]\ntype = command\nkill_grace = 1s\n"
                     "command = trap '' TERM; echo ready; sleep 300\n",
                     shutdown_grace="1s")
    d = daemons(env)
    started(d)
    assert env.run("trigger", "stubborn").returncode == 0
    d.wait_for(lambda e: e.get("event") == "command_output" and e.get("line") == "ready")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc, elapsed = wait_exit_timed(d, t0)
    assert rc == 0
    assert 2.0 - 0.02 <= elapsed <= 2.0 + EXIT_MARGIN, elapsed
    assert d.named("stubborn_failed")[0]["status"] == "interrupted"
    assert env.sql("SELECT status FROM task_runs") == [("interrupted",)]
    assert d.events[-1]["event"] == "scheduler_stopped"


def test_second_daemon_is_refused(env, daemons):
    env.write_config("[task.x]\ntype = command\ncommand = true\n")
    d = daemons(env)
    started(d)
    r = subprocess.run([d.proc.args[0], "-c", str(env.conf), "run"], capture_output=True,
                       text=True, timeout=DEADLINE)
    assert r.returncode == 1
    assert f"pid {d.proc.pid}" in r.stderr and "already runs" in r.stderr
    assert d.proc.poll() is None


# An LD_PRELOAD fault: strdup of the string named by FK_FAULT_STRDUP fails
# with ENOMEM (the daemon strdup's a task name only for its task slot).
STRDUP_FAULT_C = r"""
#include <errno.h>
#include <stdlib.h>
#include <string.h>
char *strdup(const char *s)
{
	const char *bad = getenv("FK_FAULT_STRDUP");
	size_t n = strlen(s) + 1;
	char *p;
	if (bad && strcmp(s, bad) == 0) {
		errno = ENOMEM;
		return NULL;
	}
	p = malloc(n);
	return p ? memcpy(p, s, n) : NULL;
}
"""


def strdup_fault_env(tmp_path, name):
    """The environment that makes strdup(name) fail in the daemon. Under
    ASan the interposer comes before the ASan runtime, which ASan must be
    told to accept (its malloc still serves the interposer)."""
    src, lib = tmp_path / "strdup_fault.c", tmp_path / "strdup_fault.so"
    src.write_text(STRDUP_FAULT_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True)
    asan = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if o)
    return base_env(LD_PRELOAD=str(lib), FK_FAULT_STRDUP=name, ASAN_OPTIONS=asan)


def test_task_slot_allocation_failure_reports_its_error(env, tmp_path):
    # daemon_slots_create failing used to print an uninitialised message.
    env.write_config("[task.slotless]\ntype = command\nschedule = @every 1h\ncommand = true\n")
    r = subprocess.run([BIN, "-c", str(env.conf), "run"], capture_output=True, text=True,
                       timeout=DEADLINE, cwd=env.dir, env=strdup_fault_env(tmp_path, "slotless"))
    want = "cannot set up task slotless: Cannot allocate memory"
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr == f"fleetkeeper: {want}\n", r.stderr
    failed = [e for e in parse_lines(r.stdout) if e.get("event") == "scheduler_start_failed"]
    assert len(failed) == 1, r.stdout
    assert failed[0]["error"] == want and failed[0]["error_type"] == "startup", failed
    assert "scheduler_started" not in r.stdout


def test_task_added_by_reload_without_memory_is_reported(env, daemons, tmp_path):
    # A slot that cannot be allocated at reload used to vanish silently.
    env.write_config("[task.tick]\ntype = command\nschedule = @every 1s\ncommand = echo tick\n")
    d = daemons(env, extra_env=strdup_fault_env(tmp_path, "late"))
    d.wait_for("tick_complete")
    env.conf.write_text(env.conf.read_text() + "\n[task.late]\ntype = command\ncommand = true\n")
    d.signal(signal.SIGHUP)
    failed = d.wait_for("task_add_failed")[0]
    assert failed["task"] == "late" and failed["error_type"] == "resources", failed
    d.wait_for("config_reloaded")
    n = len(d.named("tick_complete"))
    d.wait_for("tick_complete", count=n + 1)  # the daemon goes on
    assert env.run("trigger", "late").returncode != 0


def test_trigger_follow_returns_exit_status(env, daemons):
    env.write_config("[task.ok]\ntype = command\ncommand = echo fine\n"
                     "\n[task.ko]\ntype = command\ncommand = echo bad; exit 4\n")
    d = daemons(env)
    started(d)
    r = env.run("trigger", "ok", "--follow")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("run_id=")
    events = parse_lines("\n".join(lines[1:]))
    assert [e["event"] for e in events][-1] == "ok_complete"
    assert any(e.get("line") == "fine" for e in events)
    r = env.run("trigger", "ko", "--follow", "--json")
    assert r.returncode == 1
    out = parse_lines(r.stdout)
    assert out[-1]["event"] == "ko_failed" and out[-1]["exit_code"] == 4
    assert out[0]["correlation_id"] == out[-1]["correlation_id"]


def test_trigger_without_daemon_runs_in_process(env):
    env.write_config("[task.ok]\ntype = command\ncommand = echo fine\n")
    r = env.run("trigger", "ok")
    assert r.returncode == 0
    assert "no daemon is running" in r.stderr
    assert any(e["event"] == "ok_complete" for e in parse_lines(r.stdout))
    assert env.sql("SELECT trigger, status FROM task_runs") == [("manual", "success")]


def test_persistent_missed_fire_runs_once_at_start(env, daemons):
    env.write_config("[task.p]\ntype = command\nschedule = 0 3 * * *\npersistent = true\ncommand = echo caught\n"
                     "\n[task.np]\ntype = command\nschedule = 0 3 * * *\ncommand = echo never\n")
    d = daemons(env)
    started(d)
    d.stop()
    # pretend the last fire was two days ago: one fire time was missed
    con = env.connect()
    two_days_ago = time.time() - 2 * 86400
    con.execute("INSERT INTO task_state(task, last_fire_at, updated_at) VALUES ('p', ?, ?)"
                " ON CONFLICT(task) DO UPDATE SET last_fire_at = excluded.last_fire_at,"
                " updated_at = excluded.updated_at",
                (two_days_ago, two_days_ago))
    con.execute("INSERT INTO task_state(task, last_fire_at, updated_at) VALUES ('np', ?, ?)"
                " ON CONFLICT(task) DO UPDATE SET last_fire_at = excluded.last_fire_at,"
                " updated_at = excluded.updated_at",
                (two_days_ago, two_days_ago))
    con.commit()
    con.close()
    d2 = daemons(env)
    d2.wait_for("p_complete")
    d2.wait_for("task_scheduled", count=2)
    assert [e["task"] for e in d2.named("task_catchup")] == ["p"]
    d2.stop()
    assert env.sql("SELECT task, trigger FROM task_runs") == [("p", "catchup")]


def test_status_live_and_control_socket_robustness(env, daemons):
    env.write_config("[task.a]\ntype = command\nschedule = 0 0 1 1 *\ncommand = true\n")
    d = daemons(env)
    started(d)
    assert oct(os.stat(env.sock).st_mode & 0o777) == "0o600"
    r = env.run("status", "--json")
    st = json.loads(r.stdout)
    assert st["daemon"]["pid"] == d.proc.pid
    assert st["tasks"][0]["name"] == "a" and st["tasks"][0]["next_run"].startswith(str(time.gmtime().tm_year + 1))

    def ask(payload, read=True):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(DEADLINE)
        s.connect(str(env.sock))
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon stopped reading an oversized request
        data = b""
        if read:
            while not data.endswith(b"\n"):
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
        s.close()
        return data

    assert json.loads(ask(b"garbage\n"))["ok"] is False
    assert json.loads(ask(b'{"cmd": 42}\n'))["ok"] is False
    assert "unknown cmd" in json.loads(ask(b'{"cmd": "explode"}\n'))["error"]
    assert "unknown task" in json.loads(ask(b'{"cmd": "trigger", "task": "zzz"}\n'))["error"]
    big = ask(b"x" * (1 << 20))
    assert b"too large" in big
    ask(b"", read=False)  # connects, says nothing, leaves
    assert json.loads(ask(b'{"cmd": "ping"}\n')) == {"ok": True}
    assert d.proc.poll() is None


def test_timer_fires_are_not_early_and_idle_daemon_is_quiet(env, daemons):
    env.write_config("[task.far]\ntype = command\nschedule = 0 0 1 1 *\ncommand = true\n")
    d = daemons(env)
    started(d)
    pid = d.proc.pid

    def wakeups():
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        return total

    # let start-up settle: the first prune and the event writer's last flush
    time.sleep(1.5)
    before = wakeups()
    time.sleep(3)
    after = wakeups()
    # the event writer flushes only when there is something to write; on
    # PostgreSQL the cluster's heartbeat (a few statements every
    # failover_timeout / 5 = 3 s) and the request listener wake it too
    limit = 40 if ON_PG else 2
    assert after - before <= limit, (before, after)


def test_sd_notify_ready_watchdog_stopping(env, daemons, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(DEADLINE)
    env.write_config("[task.x]\ntype = command\ncommand = true\n")
    d = daemons(env, extra_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    got = []

    def expect(msg):
        while msg not in got:
            got.append(sock.recv(4096).decode())

    expect("READY=1")
    expect("WATCHDOG=1")
    n = got.count("WATCHDOG=1")
    while got.count("WATCHDOG=1") < n + 2:  # it keeps petting the watchdog
        got.append(sock.recv(4096).decode())
    d.signal(signal.SIGTERM)
    expect("STOPPING=1")
    assert d.wait_exit() == 0
    sock.close()


def set_workers(env, n):
    """write_config's [daemon] has max_concurrent_tasks = 4; change it."""
    text = env.conf.read_text()
    assert "max_concurrent_tasks = 4\n" in text
    env.conf.write_text(text.replace("max_concurrent_tasks = 4\n", f"max_concurrent_tasks = {n}\n"))


def test_one_worker_runs_tasks_due_together_one_after_another(env, daemons):
    # Three tasks due at the same moment (run_on_start: all dispatched in the
    # same pass at start), one worker: they all run, never two at once.
    names = ("a", "b", "c")
    env.write_config("".join(f"[task.{n}]\ntype = command\nschedule = 0 0 1 1 *\nrun_on_start = true\n"
                             f"command = sleep 1\n\n" for n in names))
    set_workers(env, 1)
    d = daemons(env)
    assert started(d)["tasks"] == 3
    assert d.named("scheduler_workers_configured")[0]["workers"] == 1
    for n in names:
        d.wait_for(f"{n}_complete")
    spans = sorted((event_time(d.named(f"{n}_start")[0]), event_time(d.named(f"{n}_complete")[0]), n)
                   for n in names)
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        assert start >= end, f"{second} started before {first} ended: {spans}"
    for start, end, n in spans:
        assert end - start >= 0.95, (n, spans)
    assert spans[-1][1] - spans[0][0] >= 3 * 0.95
    d.stop()
    rows = env.sql("SELECT task, trigger, status FROM task_runs ORDER BY task")
    assert rows == [(n, "start", "success") for n in names]


def test_two_workers_run_two_at_a_time(env, daemons):
    # The same with two workers: the first two overlap (so the test above
    # can tell one worker from several), the third waits for a free worker.
    names = ("a", "b", "c")
    env.write_config("".join(f"[task.{n}]\ntype = command\nrun_on_start = true\ncommand = sleep 1\n\n"
                             for n in names))
    set_workers(env, 2)
    d = daemons(env)
    started(d)
    for n in names:
        d.wait_for(f"{n}_complete")
    spans = sorted((event_time(d.named(f"{n}_start")[0]), event_time(d.named(f"{n}_complete")[0]))
                   for n in names)
    assert spans[1][0] < spans[0][1]  # two at once
    assert spans[2][0] >= min(spans[0][1], spans[1][1])  # never three


def test_run_on_start_runs_once_at_start_only(env, daemons):
    env.write_config("[task.early]\ntype = command\nschedule = 0 0 1 1 *\nrun_on_start = true\n"
                     "command = echo early\n"
                     "\n[task.late]\ntype = command\nschedule = 0 0 1 1 *\ncommand = echo late\n"
                     "\n[task.unscheduled]\ntype = command\nrun_on_start = true\ncommand = echo once\n")
    d = daemons(env)
    started(d)
    done = d.wait_for("early_complete")
    d.wait_for("unscheduled_complete")
    # both scheduled tasks are armed for next year, after the start dispatch
    scheduled = d.wait_for("task_scheduled", count=2)
    year = str(time.gmtime().tm_year + 1)
    assert sorted(e["task"] for e in scheduled) == ["early", "late"]
    assert all(e["next_run"].startswith(year) for e in scheduled)
    assert [e["trigger"] for e in d.named("early_start")] == ["start"]
    # a reload is not a start
    d.signal(signal.SIGHUP)
    d.wait_for("config_reloaded")
    st = json.loads(env.run("status", "--json").stdout)
    assert {t["name"]: t["runs_started"] for t in st["tasks"]} == {"early": 1, "late": 0, "unscheduled": 1}
    d.stop()
    assert len(d.named("early_start")) == 1 and not d.named("late_start")
    assert env.sql("SELECT task, trigger, status, correlation_id FROM task_runs ORDER BY id") == [
        ("early", "start", "success", done[0]["correlation_id"]),
        ("unscheduled", "start", "success", d.named("unscheduled_start")[0]["correlation_id"])]


def test_jitter_delays_interval_fires_within_bound(env, daemons):
    # @every 1s with jitter 500ms: fire i is dispatched at T0 + i s + j_i with
    # j_i random in [0, 0.5 s]. Its offset (dispatch time - i s) moves around
    # by up to the jitter (plus scheduling latency), where it would stay put
    # without jitter. started_at is the dispatch time (the row is written
    # when the run is handed to the pool, or the skip is recorded).
    env.write_config("[task.j]\ntype = command\nschedule = @every 1s\njitter = 500ms\ncommand = true\n")
    d = daemons(env)
    started(d)
    n = 10
    rows = env.wait_sql("SELECT started_at, status FROM task_runs WHERE task = 'j' ORDER BY id",
                        lambda r: len(r) >= n)
    d.stop()
    rows = rows[:n]
    assert all(status in ("success", "running", "skipped") for _, status in rows), rows
    offsets = [started_at - i for i, (started_at, _) in enumerate(rows)]
    spread = max(offsets) - min(offsets)
    # Loose on purpose: 10 uniform delays spread by less than 0.1 s with
    # probability 5e-6; latency on a loaded machine only widens the spread.
    assert 0.1 < spread < 0.5 + 1.0, (spread, offsets)
    assert len({round(o, 2) for o in offsets}) >= 3, offsets


def test_status_next_run_includes_the_jitter(env, daemons):
    # jitter = 1h: the next run of an hourly interval task is 1 h to 2 h
    # away, of a yearly cron task up to 1 h after its fire time; with four
    # interval tasks at least one is more than 10 s beyond the hour (all four
    # below: probability 6e-11), unless the jitter is left out.
    tasks = "".join(f"[task.i{k}]\ntype = command\nschedule = @every 1h\njitter = 1h\ncommand = true\n\n"
                    for k in range(4))
    tasks += "[task.y]\ntype = command\nschedule = 0 0 1 1 *\njitter = 1h\ncommand = true\n"
    env.write_config(tasks)
    before = time.time()
    d = daemons(env)
    started(d)
    st = json.loads(env.run("status", "--json").stdout)
    after = time.time()
    nxt = {t["name"]: datetime.fromisoformat(t["next_run"]).timestamp() for t in st["tasks"]}
    beyond = [nxt[f"i{k}"] - before - 3600 for k in range(4)]
    assert all(-1 <= b <= 3600 + (after - before) + 1 for b in beyond), beyond
    assert max(beyond) > 10, beyond
    new_year = datetime(time.gmtime().tm_year + 1, 1, 1, tzinfo=timezone.utc).timestamp()
    assert new_year <= nxt["y"] <= new_year + 3600, (nxt["y"], new_year)
    # the announced next runs are the same instants
    for e in d.wait_for("task_scheduled", count=5):
        assert abs(datetime.fromisoformat(e["next_run"]).timestamp() - nxt[e["task"]]) < 2, e
