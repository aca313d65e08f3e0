"""The command line: exit codes, check-config, once, runs, trace (issue: foundation)."""
import json
import os
import random
import re
import subprocess
import time
from datetime import datetime

import pytest

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


def test_check_config_json_escapes_the_path(env):
    # A config path with a quote and a backslash used to break --json.
    env.write_config(HELLO)
    odd = env.dir / 'we"ird\\dir'
    odd.mkdir()
    conf = odd / 'fleet"keeper\\.conf'
    conf.write_text(env.conf.read_text())
    r = subprocess.run([BIN, "-c", str(conf), "check-config", "--json"],
                       capture_output=True, text=True, env=base_env(), cwd=env.dir)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"ok": True, "config": str(conf), "tasks": 1}, r.stdout


def test_missing_config_file(env):
    r = subprocess.run([BIN, "-c", str(env.dir / "nope.conf"), "check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "nope.conf" in r.stderr


def test_garbage_config_never_crashes(env):
    """Garbage is a configuration error: exit 2, and every line of stderr
    names the file (`FILE:LINE: message`, or `FILE: message` for the whole
    file), never a crash and never an accepted configuration."""
    rnd = random.Random(7)
    samples = [b"", b"\x00" * 100, b"[task.x]\nschedule =\n", b"[daemon]\nbogus = 1\n",
               b"[\n", b"=\n", b"[task.]\n", b"\xff\xfe\xfd" * 50, b"abc\n", b"key = v\n",
               b"[daemon]\n[daemon]\n", b"; only a comment\n", b"[task.x]\ntype = command\n",
               b"[daemon]\nmax_concurrent_tasks = \xff\n", b"[task.x\x00]\n"]
    samples += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400))) for _ in range(60)]
    # text-like garbage: printable lines, some of them section headers
    alphabet = "abcdefghij_=[].;# \t0123456789*@"
    for _ in range(40):
        lines = ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 30)))
                 for _ in range(rnd.randrange(1, 8))]
        samples.append("\n".join(lines).encode())
    name = str(env.conf)
    for blob in samples:
        env.conf.write_bytes(blob)
        r = env.run("check-config")
        assert r.returncode == 2, (blob, r.returncode, r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert lines, blob
        assert all(l.startswith(name + ":") for l in lines), (blob, r.stderr)


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


# ---- fleetkeeper next (issue: scheduler core) ----

def next_lines(*args, env=None, config=None):
    """`fleetkeeper next ARGS`: (exit code, stdout lines, stderr)."""
    cmd = [BIN] + (["-c", str(config)] if config else []) + ["next", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or base_env(), timeout=60)
    return r.returncode, r.stdout.splitlines(), r.stderr


def assert_next(expr, tz, frm, want):
    rc, out, err = next_lines(expr, "-n", str(len(want)), "--tz", tz, "--from", frm)
    assert (rc, out, err) == (0, want, ""), (expr, tz, frm)


def test_next_dst_europe_berlin():
    b = "Europe/Berlin"
    # 2026-03-29: 02:00 CET -> 03:00 CEST. A fixed time in the skipped hour
    # fires once, at the jump; then at its wall time again.
    assert_next("30 2 * * *", b, "2026-03-28T12:00:00+01:00",
                ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
                 "2026-03-31T02:30:00+02:00"])
    assert_next("0 2 * * *", b, "2026-03-28T12:00:00Z",
                ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"])
    assert_next("0,30 2 * * *", b, "2026-03-28T12:00:00+01:00",
                ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00",
                 "2026-03-30T02:30:00+02:00"])
    # hour unrestricted: the skipped minutes do not occur
    assert_next("0 * * * *", b, "2026-03-29T00:30:00+01:00",
                ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00",
                 "2026-03-29T04:00:00+02:00"])
    # --from without an offset is wall time in --tz: 01:59 CET, then 02:00 is skipped
    assert_next("* * * * *", b, "2026-03-29T01:59",
                ["2026-03-29T03:00:00+02:00", "2026-03-29T03:01:00+02:00"])
    # 2026-10-25: 03:00 CEST -> 02:00 CET. A fixed time in the repeated hour
    # fires once, at its first occurrence.
    assert_next("30 2 * * *", b, "2026-10-24T12:00:00Z",
                ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"])
    assert_next("30 2 * * *", b, "2026-10-25T02:45:00+02:00", ["2026-10-26T02:30:00+01:00"])
    # hourly (hour unrestricted) follows elapsed time: once every real hour,
    # so the wall hour 02 occurs twice, once per offset (docs/scheduling.md)
    assert_next("0 * * * *", b, "2026-10-25T00:30:00+02:00",
                ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
                 "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00",
                 "2026-10-25T04:00:00+01:00"])
    assert_next("*/30 * * * *", b, "2026-10-25T01:45:00+02:00",
                ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
                 "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00",
                 "2026-10-25T03:00:00+01:00"])


def test_next_dst_america_new_york():
    ny = "America/New_York"
    # 2026-03-08: 02:00 EST -> 03:00 EDT
    assert_next("30 2 * * *", ny, "2026-03-07T12:00:00-05:00",
                ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"])
    assert_next("0 * * * *", ny, "2026-03-08T00:30:00-05:00",
                ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"])
    # 2026-11-01: 02:00 EDT -> 01:00 EST; 01:30 is the repeated time
    assert_next("30 1 * * *", ny, "2026-10-31T12:00:00-04:00",
                ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"])
    assert_next("30 2 * * *", ny, "2026-10-31T12:00:00Z",
                ["2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"])
    assert_next("0 * * * *", ny, "2026-11-01T00:30:00-04:00",
                ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00",
                 "2026-11-01T02:00:00-05:00"])


def test_next_count_and_strictly_after_from():
    # -n N gives exactly N lines, consecutive fire times
    rc, out, _ = next_lines("*/10 * * * *", "-n", "7", "--tz", "UTC",
                            "--from", "2026-01-01T00:00:00Z")
    assert rc == 0 and out == ["2026-01-01T00:%02d:00+00:00" % m for m in (10, 20, 30, 40, 50)] + [
        "2026-01-01T01:00:00+00:00", "2026-01-01T01:10:00+00:00"]
    rc, out, _ = next_lines("@hourly", "--tz", "UTC", "--from", "2026-01-01T00:00:00Z")
    assert rc == 0 and len(out) == 5  # the default
    rc, out, _ = next_lines("* * * * *", "-n", "1000", "--tz", "UTC", "--from", "2026-01-01T00:00:00Z")
    assert rc == 0 and len(out) == 1000 and out[-1] == "2026-01-01T16:40:00+00:00"
    # a --from exactly on a fire time excludes it; a second before includes it
    assert_next("0 * * * *", "UTC", "2026-01-01T05:00:00Z", ["2026-01-01T06:00:00+00:00"])
    assert_next("0 * * * *", "UTC", "2026-01-01T04:59:59Z", ["2026-01-01T05:00:00+00:00"])
    assert_next("0 * * * *", "UTC", "2026-01-01T05:00:00.5Z", ["2026-01-01T06:00:00+00:00"])
    assert_next("0 5 * * *", "Europe/Berlin", "2026-01-01T05:00:00+01:00",
                ["2026-01-02T05:00:00+01:00"])
    # the same instant written with another offset; printed in --tz
    assert_next("0 5 * * *", "Europe/Berlin", "2026-01-01T04:00:00Z", ["2026-01-02T05:00:00+01:00"])
    # a date alone is midnight in the zone
    assert_next("@daily", "Asia/Tokyo", "2026-01-01", ["2026-01-02T00:00:00+09:00"])


def test_next_default_from_is_now():
    before = time.time()
    rc, out, _ = next_lines("* * * * *", "-n", "2", "--tz", "UTC")
    after = time.time()
    assert rc == 0 and len(out) == 2
    first, second = (datetime.fromisoformat(x).timestamp() for x in out)
    assert before < first <= after + 60 and first % 60 == 0
    assert second == first + 60


def test_next_intervals():
    assert_next("@every 90s", "UTC", "2026-01-01T00:00:00Z",
                ["2026-01-01T00:01:30+00:00", "2026-01-01T00:03:00+00:00",
                 "2026-01-01T00:04:30+00:00"])
    assert_next("@every 5m", "UTC", "2026-01-01T00:00:07Z",
                ["2026-01-01T00:05:07+00:00", "2026-01-01T00:10:07+00:00"])
    assert_next("@every 1h30m", "UTC", "2026-01-01T23:00:00Z",
                ["2026-01-02T00:30:00+00:00", "2026-01-02T02:00:00+00:00"])
    assert_next("@every 1500ms", "UTC", "2026-01-01T00:00:00Z",  # sub-second parts round up
                ["2026-01-01T00:00:02+00:00", "2026-01-01T00:00:04+00:00"])
    # elapsed time through DST: always 3600 s apart, whatever the wall clock says
    assert_next("@every 1h", "Europe/Berlin", "2026-03-29T01:30:00+01:00",
                ["2026-03-29T03:30:00+02:00", "2026-03-29T04:30:00+02:00"])
    assert_next("@every 1h", "America/New_York", "2026-11-01T00:30:00-04:00",
                ["2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00",
                 "2026-11-01T02:30:00-05:00"])


def test_next_task_uses_its_own_zone(env):
    env.write_config("[task.ny]\ntype = command\nschedule = 0 9 * * mon-fri\ntz = America/New_York\n"
                     "command = true\n"
                     "\n[task.local]\ntype = command\nschedule = 0 9 * * *\ncommand = true\n"
                     "\n[task.every]\ntype = command\nschedule = @every 2m\ncommand = true\n"
                     "\n[task.manual]\ntype = command\ncommand = true\n")
    # Friday before the spring-forward, then Monday and Tuesday in EDT
    rc, out, err = next_lines("ny", "-n", "3", "--from", "2026-03-06T00:00:00Z", config=env.conf)
    assert (rc, err) == (0, "")
    assert out == ["2026-03-06T09:00:00-05:00", "2026-03-09T09:00:00-04:00",
                   "2026-03-10T09:00:00-04:00"]
    # --tz overrides the task's zone
    rc, out, _ = next_lines("ny", "-n", "1", "--tz", "UTC", "--from", "2026-03-06T00:00:00Z",
                            config=env.conf)
    assert (rc, out) == (0, ["2026-03-06T09:00:00+00:00"])
    # a task without tz is computed in the local zone (TZ)
    rc, out, _ = next_lines("local", "-n", "2", "--from", "2025-12-31T23:00:00Z", config=env.conf,
                            env=base_env(TZ="Asia/Tokyo"))
    assert (rc, out) == (0, ["2026-01-01T09:00:00+09:00", "2026-01-02T09:00:00+09:00"])
    rc, out, _ = next_lines("every", "-n", "2", "--from", "2026-01-01T00:00:00Z", config=env.conf)
    assert (rc, out) == (0, ["2026-01-01T00:02:00+00:00", "2026-01-01T00:04:00+00:00"])
    rc, out, err = next_lines("manual", config=env.conf)
    assert rc == 2 and out == [] and "task 'manual' has no schedule" in err
    rc, out, err = next_lines("nosuchtask", config=env.conf)
    assert rc == 2 and out == [] and "'nosuchtask' is neither a task" in err


NEXT_ERRORS = [
    ("61 * * * *", "minute: value 61 out of range 0-59"),
    ("0 24 * * *", "hour: value 24 out of range 0-23"),
    ("0 0 0 * *", "day-of-month: value 0 out of range 1-31"),
    ("0 0 32 * *", "day-of-month: value 32 out of range 1-31"),
    ("0 0 * 13 *", "month: value 13 out of range 1-12"),
    ("0 0 * * 8", "day-of-week: value 8 out of range 0-7"),
    ("*/0 * * * *", "minute: bad step '0'"),
    ("0 0 * * fooday", "day-of-week: unknown name 'fooday'"),
    ("0 0 * foo *", "month: unknown name 'foo'"),
    ("5-3 * * * *", "minute: bad range 5-3 (start after end)"),
    ("1,,2 * * * *", "minute: empty list element"),
    ("* * * *", "expected 5 fields, got 4"),
    ("* * * * * *", "expected 5 fields, got 6"),
    ("@fortnightly", "unknown shorthand '@fortnightly'"),
    ("@every 500ms", "@every: interval must be at least 1s"),
    ("@every 5x", "@every: unknown unit 'x'"),
    ("0 0 30 2 *", "can never fire"),
    ("0 0 31 4,6 *", "can never fire"),
]


def test_next_invalid_expression_exits_2_naming_field_and_why():
    for expr, why in NEXT_ERRORS:
        rc, out, err = next_lines(expr, "--tz", "UTC")
        assert rc == 2 and out == [], (expr, rc, out)
        assert len(err.strip().splitlines()) == 1, (expr, err)
        assert why in err and f"'{expr}'" in err, (expr, err)


def test_next_bad_arguments_exit_2():
    cases = [
        (["-n", "0"], "-n: expected a number from 1 to 100000, got '0'"),
        (["-n", "-1"], "got '-1'"),
        (["-n", "x"], "got 'x'"),
        (["-n", "100001"], "got '100001'"),
        (["-n", "1e3"], "got '1e3'"),
        (["-n"], "unexpected argument '-n'"),
        (["--from", "yesterday"], "--from: expected an ISO 8601 time"),
        (["--from", "2026-13-01T00:00:00Z"], "--from: expected an ISO 8601 time"),
        (["--from", "2026-02-30T00:00:00Z"], "--from: expected an ISO 8601 time"),
        (["--from", "2026-02-29"], "--from: expected an ISO 8601 time"),  # not a leap year
        (["--from", "2026-04-31T10:00"], "--from: expected an ISO 8601 time"),
        (["--from", "2026-01-01T24:00:00Z"], "--from: expected an ISO 8601 time"),
        (["--from", "2026-01-01T10:00:00+1"], "--from: expected an ISO 8601 time"),
        (["--from", "2026-01-01T10:00:00Zjunk"], "--from: expected an ISO 8601 time"),
        (["--from", "1900-01-01T00:00:00Z"], "--from: times before 1970 are not supported"),
        (["--from"], "unexpected argument '--from'"),
        (["--tz", "Mars/Base"], "--tz: unknown time zone 'Mars/Base'"),
        (["--tz", "../etc/passwd"], "--tz: invalid time zone name"),
        (["--tz", "/etc/localtime"], "--tz: invalid time zone name"),
        (["--bogus"], "unexpected argument '--bogus'"),
        (["0 * * * *"], "unexpected argument '0 * * * *'"),  # a second target
    ]
    for args, why in cases:
        rc, out, err = next_lines("@daily", *args)
        assert rc == 2 and out == [], (args, rc, out)
        assert len(err.strip().splitlines()) == 1 and why in err, (args, err)
    rc, _, err = next_lines()
    assert rc == 2 and "next needs a TASK or a schedule expression" in err
    # a leap day is a date
    assert_next("@daily", "UTC", "2028-02-29", ["2028-03-01T00:00:00+00:00"])


# Typical expressions; croniter (Debian python3-croniter) agrees with cronie
# on all of them (it differs on a day-of-month step plus a day-of-week,
# docs/scheduling.md, which is left out here).
ORACLE_EXPRS = [
    "* * * * *", "*/5 * * * *", "*/15 * * * *", "0 * * * *", "30 */2 * * *",
    "0 9-17 * * mon-fri", "15 14 1 * *", "0 0 * * 0", "0 0 * * 7", "0 22 * * 1-5",
    "23 0-20/2 * * *", "5 4 * * sun", "0 0,12 1 */2 *", "0 4 8-14 * *", "0 0 1,15 * 3",
    "0 12 * jan,jul *", "45 23 31 * *", "0 0 29 2 *", "10,20,30 8 * * tue,thu",
    "59 23 * * 6", "0 0 13 * 5", "1-10/3 3 * * *", "@hourly", "@daily", "@weekly",
    "@monthly", "@yearly",
]


def test_next_agrees_with_croniter_in_utc():
    croniter = pytest.importorskip("croniter").croniter
    for frm in ("2026-01-15T10:17:42Z", "2027-12-31T23:59:00Z", "2028-02-28T12:00:00Z"):
        start = datetime.fromisoformat(frm.replace("Z", "+00:00"))
        for expr in ORACLE_EXPRS:
            rc, out, err = next_lines(expr, "-n", "5", "--tz", "UTC", "--from", frm)
            it = croniter(expr, start)
            want = [it.get_next(datetime).isoformat() for _ in range(5)]
            assert (rc, out) == (0, want), (expr, frm, err)


# ---- issue 14: an operator's first hour ----

BROKEN = "\n[task.broken]\ntype = command\nschedule = 61 * * * *\ncommand = true\n"


def test_read_only_commands_answer_while_the_config_is_broken(env, tmp_path):
    """With errors in the file, status, runs, incidents and trace print the
    errors as warnings and answer from the state directory the file names,
    exit 0; check-config and once still refuse it (exit 2)."""
    other = tmp_path / "elsewhere"  # not ./var: the state directory is the file's
    env.write_config(HELLO)
    env.conf.write_text(env.conf.read_text().replace(f"state_dir = {env.state}",
                                                     f"state_dir = {other}")
                        .replace(f"control_socket = {env.sock}\n", ""))
    r = env.run("once", "hello")
    assert r.returncode == 0, r.stderr
    cid = parse_lines(r.stdout)[-1]["correlation_id"]
    env.conf.write_text(env.conf.read_text() + BROKEN)
    bad_line = env.conf.read_text().splitlines().index("schedule = 61 * * * *") + 1
    for args in (["status"], ["status", "--json"], ["runs"], ["runs", "--json"], ["incidents"],
                 ["incidents", "--open", "--json"], ["trace", cid]):
        r = subprocess.run([BIN, "-c", str(env.conf), *args], capture_output=True, text=True,
                           env=base_env(), cwd="/")
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert f"warning: {env.conf}:{bad_line}: [task.broken] schedule" in r.stderr, args
        assert f"answers from the state directory {other}" in r.stderr, (args, r.stderr)
        if args == ["runs", "--json"]:
            assert [x["correlation_id"] for x in parse_lines(r.stdout)] == [cid]
        if args == ["status", "--json"]:
            st = json.loads(r.stdout)
            assert [(t["name"], t["last_status"]) for t in st["tasks"]] == [("hello", "success")]
        if args[0] == "trace":
            assert parse_lines(r.stdout)[0]["event"] == "hello_start"
    assert env.run("check-config").returncode == 2
    assert env.run("once", "hello").returncode == 2
    # a file that cannot be read names no state directory: still exit 2
    r = subprocess.run([BIN, "-c", str(tmp_path / "missing.conf"), "status"],
                       capture_output=True, text=True, env=base_env())
    assert r.returncode == 2 and "missing.conf" in r.stderr


def test_status_reaches_the_daemon_while_the_config_is_broken(env, daemons):
    env.write_config(HELLO)
    d = daemons(env)
    d.wait_for("scheduler_started")
    env.conf.write_text(env.conf.read_text() + BROKEN)
    r = env.run("status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["daemon"]["pid"] == d.proc.pid
    assert "warning:" in r.stderr


def test_status_last_run_column_is_a_time_not_a_run_id(env):
    env.write_config(HELLO)
    assert env.run("once", "hello").returncode == 0
    r = env.run("status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(l for l in lines if l.startswith("TASK"))
    row = next(l for l in lines if l.startswith("hello"))
    col = header.index("LAST_RUN")
    last_run = row[col:].split()[0]
    assert last_run != "1" and last_run.startswith(str(datetime.now().year)), lines
    st = json.loads(env.run("status", "--json").stdout)
    t = st["tasks"][0]
    assert t["last_run_id"] == 1 and t["last_finished_at"].startswith(last_run)


def test_runs_shows_a_skipped_runs_reason(env):
    env.write_config("[task.server_sync]\n")
    r = env.run("once", "server_sync")
    assert r.returncode == 0, r.stderr
    r = env.run("runs")
    row = r.stdout.splitlines()[1]
    assert "skipped" in row and "no_providers" in row, r.stdout
    (run,) = parse_lines(env.run("runs", "--json").stdout)
    assert run["status"] == "skipped" and run["reason"] == "no_providers"


def test_next_json_prints_json_lines():
    rc, out, err = next_lines("@every 90s", "-n", "2", "--tz", "UTC",
                              "--from", "2026-01-01T00:00:00Z", "--json")
    assert (rc, err) == (0, "")
    assert [json.loads(l) for l in out] == [
        {"next_run": "2026-01-01T00:01:30+00:00", "unix": 1767225690},
        {"next_run": "2026-01-01T00:03:00+00:00", "unix": 1767225780}]


def test_next_interval_task_agrees_with_the_daemon(env, daemons):
    """An interval counts from the daemon's start: `next TASK` starts from
    the daemon's own next run (it used to count from now)."""
    env.write_config("[task.every]\ntype = command\nschedule = @every 1h\ncommand = true\n")
    d = daemons(env)
    d.wait_for("scheduler_started")
    time.sleep(2.2)  # now + 1h is no longer the daemon's next run
    st = json.loads(env.run("status", "--json").stdout)
    daemon_next = datetime.fromisoformat(st["tasks"][0]["next_run"]).timestamp()
    rc, out, err = next_lines("every", "-n", "2", config=env.conf)
    assert rc == 0, err
    first, second = (datetime.fromisoformat(x).timestamp() for x in out)
    assert first == int(daemon_next) and second == first + 3600, (out, st)
    d.stop()
    rc, out, err = next_lines("every", "-n", "1", config=env.conf)
    assert rc == 0 and "no daemon answers" in err


def test_interrupted_run_is_a_warning_not_an_error(env, daemons):
    env.write_config("[task.slow]\ntype = command\ncommand = sleep 30\nrun_on_start = true\n",
                     shutdown_grace="1s")
    d = daemons(env)
    d.wait_for("slow_start")
    d.signal(15)
    d.wait_exit()
    (ev,) = d.named("slow_failed")
    assert ev["status"] == "interrupted" and ev["level"] == "warning", ev
    assert env.sql("SELECT status FROM task_runs") == [("interrupted",)]


SECRETS = [
    ("[github]\n", "token"), ("[ssh]\n", "password"), ("[ssh]\n", "passphrase"),
    ("[notify.wh]\ntype = webhook\napi_url = http://127.0.0.1:9/\nsecret_file = /dev/null\n",
     "secret"),
    ("[notify.tg]\ntype = telegram\nchat_ids = 1\ntoken_env = FK_T\n", "token"),
    ("[provider.time4vps]\n", "api_key"), ("[task.t]\ntype = command\ncommand = true\n", "secret"),
]


def test_inline_secret_message_suggests_only_keys_the_section_takes(env):
    """The message used to suggest KEY_env for every secret ([notify.X]
    secret_env, [ssh] password_env), keys that are then refused as unknown."""
    r = subprocess.run([BIN, "check-config", "--list-keys", "--json"], capture_output=True,
                       text=True)
    accepted = {(o["section"], o["key"]) for o in parse_lines(r.stdout)}
    for section, key in SECRETS:
        env.conf.write_text(section + f"{key} = s3cret\n")
        r = env.run("check-config")
        msg = next(l for l in r.stderr.splitlines() if f"] {key}: put secrets" in l)
        name = section.split("]")[0][1:]
        doc_section = name.split(".")[0] + ".NAME" if "." in name and not name.startswith(
            "provider.") else name
        suggested = re.findall(r"\((\w+_(?:file|env))\)", msg)
        for s in suggested:
            assert (doc_section, s) in accepted or (
                doc_section == "task.NAME" and ("task.NAME type=command", s) in accepted), msg
        assert "s3cret" not in msg
    env.conf.write_text(SECRETS[3][0] + "secret = s3cret\n")
    r = env.run("check-config")
    assert "put secrets in a file (secret_file), not in the configuration" in r.stderr
    assert "secret_env" not in r.stderr


def test_ansible_runs_are_recorded_and_an_unknown_playbook_is_a_usage_error(tmp_path):
    from fk_ansible import AnsibleHost, needs_ansible  # noqa: F401 (sshd, ansible-playbook)
    if needs_ansible.args[0]:
        pytest.skip(needs_ansible.kwargs["reason"])
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-1")
        pb = tmp_path / "noop.yml"
        pb.write_text("---\n- hosts: all\n  gather_facts: false\n  tasks:\n"
                      "    - ansible.builtin.command: 'true'\n")
        r = h.env.run("ansible", str(pb), "--server", "vps-1")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        events = parse_lines(r.stdout)
        done = next(e for e in events if e["event"] == "ansible_complete")
        start = next(e for e in events if e["event"] == "ansible_playbook_start")
        assert done["correlation_id"] == start["correlation_id"] and done["ok_count"] == 1
        (run,) = parse_lines(h.env.run("runs", "--json").stdout)
        assert (run["task"], run["trigger"], run["status"]) == ("ansible", "cli", "success")
        assert run["correlation_id"] == start["correlation_id"]
        r = h.env.run("ansible", "no_such_book", "--server", "vps-1")
        assert r.returncode == 2 and "not found" in r.stderr
        assert len(parse_lines(h.env.run("runs", "--json").stdout)) == 1
    finally:
        h.close()
