"""The command line: exit codes, check-config, once, runs, trace (issue: foundation)."""
import json
import os
import random
import subprocess

from conftest import BIN, ROOT, base_env, parse_lines

HELLO = """
[task.hello]
type = command
command = echo "hello world"; echo "to stderr" >&2; printf 'no newline'
"""


def test_version_and_help(env):
    r = subprocess.run([BIN, "version"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.startswith("fleetkeeper ")
    r = subprocess.run([BIN, "help"], capture_output=True, text=True)
    assert r.returncode == 0 and "check-config" in r.stdout


def test_usage_errors_exit_2_with_one_line(env):
    for args in (["frobnicate"], [], ["-c"], ["--bogus", "status"], ["once"], ["trace"]):
        r = subprocess.run([BIN, *args], capture_output=True, text=True, env=base_env())
        assert r.returncode == 2, (args, r)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_shipped_config_passes_check(env):
    r = subprocess.run(
        [BIN, "-c", str(ROOT / "etc" / "fleetkeeper.conf"), "check-config"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_config_error_names_file_and_line(env):
    env.write_config(HELLO + "\nschedule = 61 * * * *\n")
    r = env.run("check-config")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    expected_line = env.conf.read_text().splitlines().index("schedule = 61 * * * *") + 1
    assert any(l.startswith(f"{env.conf}:{expected_line}:") and "minute" in l for l in lines), lines


def test_missing_config_file(env):
    r = subprocess.run([BIN, "-c", str(env.dir / "nope.conf"), "check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "nope.conf" in r.stderr


def test_garbage_config_never_crashes(env):
    rnd = random.Random(7)
    samples = [b"", b"\x00" * 100, b"[task.x]\nschedule =\n", b"[daemon]\nbogus = 1\n",
               b"[\n", b"=\n", b"[task.]\n", b"\xff\xfe\xfd" * 50]
    samples += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400))) for _ in range(40)]
    for blob in samples:
        env.conf.write_bytes(blob)
        r = env.run("check-config")
        assert r.returncode in (0, 2), (blob, r.returncode, r.stderr)
        if r.returncode == 2:
            assert r.stderr.strip(), blob


def test_once_emits_events_stores_them_and_trace_replays(env):
    env.write_config(HELLO)
    r = env.run("once", "hello")
    assert r.returncode == 0, r.stderr
    events = parse_lines(r.stdout)
    for e in events:
        assert list(e)[:5] == ["timestamp", "level", "service", "logger", "event"], e
    names = [e["event"] for e in events]
    assert names[0] == "logging_initialized"
    run_events = [e for e in events if "correlation_id" in e]
    cids = {e["correlation_id"] for e in run_events}
    assert len(cids) == 1
    cid = cids.pop()
    # stdout and stderr lines may interleave either way; everything else is ordered
    assert [e["event"] for e in run_events] == [
        "hello_start", "command_start", "command_output", "command_output", "command_output",
        "command_complete", "hello_complete"]
    outputs = {(e["stream"], e["line"]) for e in run_events if e["event"] == "command_output"}
    assert outputs == {("stdout", "hello world"), ("stderr", "to stderr"), ("stdout", "no newline")}
    complete = next(e for e in run_events if e["event"] == "hello_complete")
    assert isinstance(complete["duration_sec"], float) or isinstance(complete["duration_sec"], int)
    assert complete["lines_output"] == 3
    assert complete["task"] == "hello" and isinstance(complete["run_id"], int)
    cc = next(e for e in run_events if e["event"] == "command_complete")
    assert cc["exit_code"] == 0

    rows = env.sql("SELECT task, status, correlation_id, exit_code, items FROM task_runs")
    assert rows == [("hello", "success", cid, 0, '{"lines_output": 3}')]
    stored = env.sql("SELECT event FROM events WHERE correlation_id = ? ORDER BY id", cid)
    assert [s[0] for s in stored] == [e["event"] for e in run_events]

    t = env.run("trace", cid)
    assert t.returncode == 0
    assert parse_lines(t.stdout) == run_events


def test_once_failing_command_exits_1_and_records_failure(env):
    env.write_config("[task.bad]\ntype = command\ncommand = exit 3\n")
    r = env.run("once", "bad")
    assert r.returncode == 1
    events = parse_lines(r.stdout)
    failed = [e for e in events if e["event"] == "bad_failed"]
    assert len(failed) == 1
    assert failed[0]["error_type"] == "exit_status" and failed[0]["exit_code"] == 3
    assert "duration_sec" in failed[0]
    assert env.sql("SELECT status, exit_code, error_type FROM task_runs") == [("failed", 3, "exit_status")]


def test_once_unknown_task_is_usage_error(env):
    env.write_config(HELLO)
    r = env.run("once", "nope")
    assert r.returncode == 2
    assert "nope" in r.stderr and "hello" in r.stderr


def test_runs_and_status_listing(env):
    env.write_config(HELLO + "\n[task.bad]\ntype = command\ncommand = false\n")
    assert env.run("once", "hello").returncode == 0
    assert env.run("once", "bad").returncode == 1
    r = env.run("runs", "--json")
    assert r.returncode == 0
    runs = parse_lines(r.stdout)
    assert [(x["task"], x["status"]) for x in runs] == [("bad", "failed"), ("hello", "success")]
    r = env.run("runs", "--task", "hello", "--json")
    assert [x["task"] for x in parse_lines(r.stdout)] == ["hello"]
    r = env.run("runs")
    assert r.returncode == 0 and "CORRELATION_ID" in r.stdout.splitlines()[0]
    r = env.run("runs", "--limit", "zero")
    assert r.returncode == 2
    r = env.run("status", "--json")
    assert r.returncode == 0
    st = json.loads(r.stdout)
    assert st["daemon"] is None
    assert {t["name"]: t["last_status"] for t in st["tasks"]} == {"hello": "success", "bad": "failed"}


def test_log_format_console_and_service_name(env):
    env.write_config(HELLO)
    r = env.run("once", "hello", env=base_env(LOG_FORMAT="console", SERVICE_NAME="fk-test"))
    assert r.returncode == 0
    assert "hello_complete" in r.stdout
    assert not r.stdout.lstrip().startswith("{")
    rows = env.sql("SELECT line FROM events WHERE event = 'hello_complete'")
    assert json.loads(rows[0][0])["service"] == "fk-test"


def test_shipped_default_config_skips_tasks_without_credentials(tmp_path):
    conf = (ROOT / "etc" / "fleetkeeper.conf").read_text()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "fleetkeeper.conf").write_text(conf)
    r = subprocess.run([BIN, "once", "github_sync"], capture_output=True, text=True,
                       cwd=tmp_path, env=base_env())
    assert r.returncode == 0, r.stderr
    skipped = [e for e in parse_lines(r.stdout) if e["event"] == "github_sync_skipped"]
    assert skipped and skipped[0]["reason"] == "no_credentials"
    assert (tmp_path / "var" / "state.db").exists()
    os.remove(tmp_path / "var" / "state.db")
