"""The real daemon: schedules, overlap, timeouts, reload, shutdown, lock,
control socket, trigger --follow, persistent catch-up (issue: scheduler core)."""
import json
import os
import signal
import socket
import subprocess
import time

from conftest import DEADLINE, Daemon, parse_lines, pid_alive, wait_until


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


def test_sigterm_during_run_exits_0_with_run_interrupted(env, daemons):
    env.write_config("[task.long]\ntype = command\ncommand = sleep 300\n",
                     shutdown_grace="1s")
    d = daemons(env)
    started(d)
    assert env.run("trigger", "long").returncode == 0
    d.wait_for("command_start")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert time.monotonic() - t0 < 1 + 6  # grace + the command's kill grace at most
    names = [e["event"] for e in d.events]
    assert "scheduler_shutdown_requested" in names
    assert names[-1] == "scheduler_stopped"
    failed = d.named("long_failed")[0]
    assert failed["status"] == "interrupted"
    assert env.sql("SELECT status FROM task_runs WHERE task='long'") == [("interrupted",)]
    # the events up to scheduler_stopped are in the store
    assert env.sql("SELECT count(*) FROM events WHERE event='scheduler_stopped'") == [(1,)]


def test_second_daemon_is_refused(env, daemons):
    env.write_config("[task.x]\ntype = command\ncommand = true\n")
    d = daemons(env)
    started(d)
    r = subprocess.run([d.proc.args[0], "-c", str(env.conf), "run"], capture_output=True,
                       text=True, timeout=DEADLINE)
    assert r.returncode == 1
    assert f"pid {d.proc.pid}" in r.stderr and "already runs" in r.stderr
    assert d.proc.poll() is None


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
    import sqlite3
    con = sqlite3.connect(env.db)
    two_days_ago = time.time() - 2 * 86400
    con.execute("INSERT OR REPLACE INTO task_state(task, last_fire_at, updated_at) VALUES ('p', ?, ?)",
                (two_days_ago, two_days_ago))
    con.execute("INSERT OR REPLACE INTO task_state(task, last_fire_at, updated_at) VALUES ('np', ?, ?)",
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
    # the event writer flushes only when there is something to write
    assert after - before <= 2, (before, after)


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
