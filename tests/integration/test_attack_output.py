"""A command task's output under attack (issue 15): lines of many
megabytes, NUL bytes, and a child that daemonizes and keeps stdout open.
Real daemon, real processes, the events read back from the store. Each test
failed before its fix (see the docstrings and docs/robustness.md, "Command
output under attack")."""
import json
import time

from conftest import DEADLINE, pid_alive, wait_until

MIB = 1024 * 1024


def vm_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def stored(env, task, event):
    """The stored events of task's runs named event, parsed, in order."""
    rows = env.sql("SELECT line FROM events WHERE task = ? AND event = ? ORDER BY id", task, event)
    return [json.loads(r[0]) for r in rows]


def stored_raw(env, task, event):
    return [r[0] for r in env.sql("SELECT line FROM events WHERE task = ? AND event = ? "
                                  "ORDER BY id", task, event)]


# ---- max_line_bytes ----

def test_lines_of_10_mib_are_cut_and_memory_stays_bounded(env, daemons):
    """Before: each 10 MiB line was split into 8 KiB pieces, 1280
    command_output events a line (3 lines: 3840 events, 30 MiB stored), none
    of them marked; the daemon's peak RSS grew by tens of MiB."""
    env.write_config("""[task.big]
type = command
command = for i in 1 2 3; do head -c 10485760 /dev/zero | tr '\\0' a; echo; done; echo after
""")
    d = daemons(env)
    d.wait_for("scheduler_started")
    pid = d.proc.pid
    rss_before = vm_kb(pid, "VmRSS")
    assert env.run("trigger", "big").returncode == 0
    done = d.wait_for("big_complete", deadline=DEADLINE * 2)[0]
    assert done["lines_output"] == 4 and done["lines_truncated"] == 3, done
    env.wait_sql("SELECT count(*) FROM events WHERE event = 'big_complete'", lambda r: r[0][0] == 1)
    hwm = vm_kb(pid, "VmHWM")
    out = stored(env, "big", "command_output")
    assert len(out) == 4, [len(e["line"]) for e in out]
    for e in out[:3]:
        # at most max_line_bytes (64 KiB) of text; the log's own 64 KiB line
        # budget may shorten it a little more and mark that
        text = e["line"].removesuffix("...(truncated)")
        assert e["truncated"] is True and set(text) == {"a"}, e.keys()
        assert len(e["line"]) <= 65536
        assert e["bytes_dropped"] == 10485760 - 65536, e["bytes_dropped"]
    assert out[3]["line"] == "after" and "truncated" not in out[3]
    # one run cannot store tens of MiB any more
    size = env.sql("SELECT sum(length(line)) FROM events WHERE task = 'big'")[0][0]
    assert size < 512 * 1024, size
    assert hwm - rss_before < 8 * 1024, (rss_before, hwm)  # before: +4.5 MiB, 32 MB stored
    row = env.sql("SELECT status, items FROM task_runs WHERE task = 'big'")
    assert row[0][0] == "success" and json.loads(row[0][1])["lines_truncated"] == 3, row


def test_a_tasks_own_max_line_bytes_and_the_daemons(env):
    """A task's max_line_bytes wins over [daemon]'s; "\\r\\n" is no content."""
    env.write_config("""[task.small]
type = command
max_line_bytes = 1000
command = head -c 5000 /dev/zero | tr '\\0' b; printf '\\r\\n'

[task.other]
type = command
command = head -c 3000 /dev/zero | tr '\\0' c
""", daemon_extra="max_line_bytes = 2048")
    for task, want, dropped in (("small", "b" * 1000, 4000), ("other", "c" * 2048, 952)):
        r = env.run("once", task)
        assert r.returncode == 0, r.stderr
        (line,) = stored(env, task, "command_output")
        assert line["line"] == want and line["truncated"] is True, (task, len(line["line"]))
        assert line["bytes_dropped"] == dropped, line["bytes_dropped"]


def test_max_line_bytes_out_of_range_is_a_config_error(env):
    env.write_config("[task.t]\ntype = command\ncommand = true\nmax_line_bytes = 100\n",
                     daemon_extra="max_line_bytes = 70000")
    r = env.run("check-config")
    assert r.returncode == 2, r
    assert "max_line_bytes" in r.stderr and "65536" in r.stderr, r.stderr
    assert r.stderr.count("max_line_bytes") >= 2, r.stderr


# ---- NUL bytes ----

def test_nul_byte_in_output_is_escaped_not_a_line_end(env):
    """Before: printf 'a\\0b\\n' gave the line "a" (the C string ended at the
    NUL), on stdout and in the store."""
    env.write_config("[task.nul]\ntype = command\ncommand = printf 'a\\000b\\n\\000\\n'\n")
    r = env.run("once", "nul")
    assert r.returncode == 0, r.stderr
    printed = [ln for ln in r.stdout.splitlines() if '"command_output"' in ln]
    assert len(printed) == 2, r.stdout
    assert '"line": "a\\u0000b"' in printed[0], printed[0]
    assert [json.loads(ln)["line"] for ln in printed] == ["a\0b", "\0"]
    raw = stored_raw(env, "nul", "command_output")
    assert '"line": "a\\u0000b"' in raw[0], raw
    assert [json.loads(x)["line"] for x in raw] == ["a\0b", "\0"]


# ---- a child that daemonizes and keeps stdout open ----

DAEMONIZING = "(sleep 1000 & echo $!); echo done"


def sleeper_pid(env, run_id):
    rows = env.sql("SELECT line FROM events WHERE run_id = ? AND event = 'command_output' "
                   "ORDER BY id", run_id)
    lines = [json.loads(r[0])["line"] for r in rows]
    assert lines[1:] == ["done"], lines
    return int(lines[0])


def test_daemonized_child_holding_stdout_ends_after_the_drain_and_next_fire_runs(env, daemons):
    """Before: the run waited for EOF on stdout, i.e. for the sleeper: it
    stayed `running` for ever and every later fire of the task was skipped
    (no d_complete within the deadline)."""
    env.write_config(f"[task.d]\ntype = command\nschedule = @every 2s\ncommand = {DAEMONIZING}\n")
    d = daemons(env)
    first = d.wait_for("d_complete", deadline=5 + DEADLINE)[0]
    # the default output_drain is 5 s
    assert 5 <= first["duration_sec"] < 5 + 3, first
    assert first["exit_code"] == 0 and first["orphans_killed"] >= 1, first
    cc = d.wait_for("command_complete")[0]
    assert cc["orphans_killed"] >= 1 and cc["exit_code"] == 0, cc
    run_id = first["run_id"]
    env.wait_sql("SELECT status, exit_code FROM task_runs WHERE id = ?",
                 lambda r: r == [("success", 0)], run_id)
    pid = sleeper_pid(env, run_id)
    wait_until(lambda: not pid_alive(pid), deadline=5, what=f"sleeper {pid} killed")
    # the next fire runs too
    second = d.wait_for("d_complete", count=2, deadline=5 + DEADLINE)[1]
    assert second["run_id"] != run_id and second["exit_code"] == 0
    items = json.loads(env.sql("SELECT items FROM task_runs WHERE id = ?", run_id)[0][0])
    assert items["orphans_killed"] >= 1, items


def test_output_drain_of_a_task(env, daemons):
    """output_drain = 1s: the run ends about 1 s after the shell exits."""
    env.write_config(f"[task.q]\ntype = command\noutput_drain = 1s\ncommand = {DAEMONIZING}\n")
    r = env.run("once", "q")
    assert r.returncode == 0, r.stderr
    (done,) = [json.loads(ln) for ln in r.stdout.splitlines() if '"q_complete"' in ln]
    assert 1 <= done["duration_sec"] < 3 and done["orphans_killed"] == 1, done


def test_daemonized_child_with_timeout_ends_success_not_timeout(env, daemons):
    """Before: the run ended `timeout` (exit_code 0 recorded: the shell had
    exited 0) once the 8 s timeout cancelled the wait for the sleeper."""
    env.write_config(f"[task.t]\ntype = command\ntimeout = 8s\ncommand = {DAEMONIZING}\n")
    d = daemons(env)
    d.wait_for("scheduler_started")
    t0 = time.monotonic()
    assert env.run("trigger", "t").returncode == 0
    done = d.wait_for(lambda e: e.get("event") in ("t_complete", "t_failed"), what="t ended")[0]
    assert done["event"] == "t_complete", done
    assert 5 <= done["duration_sec"] < 7.5, done  # the default output_drain, 5 s
    assert time.monotonic() - t0 < 8, "the run ended after the drain, not at the timeout"
    assert done["orphans_killed"] >= 1
    env.wait_sql("SELECT status, exit_code FROM task_runs WHERE task = 't'",
                 lambda r: r == [("success", 0)])
    pid = sleeper_pid(env, done["run_id"])
    wait_until(lambda: not pid_alive(pid), deadline=5, what=f"sleeper {pid} killed")
