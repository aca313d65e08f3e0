"""Integration tests run the real fleetkeeper binary against real SQLite files.

Helpers here: a per-test state directory and configuration, the CLI runner,
and a Daemon that reads the daemon's JSON lines on a thread so that tests
wait on events with a deadline instead of sleeping.
"""
import json
import os
import queue
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("FK_SOURCE_ROOT", Path(__file__).resolve().parents[2]))
BIN = os.environ.get("FLEETKEEPER_BIN", str(ROOT / "build" / "fleetkeeper"))

# Generous deadlines: the suite must pass on a loaded 2-core machine, under
# sanitizers too. A deadline is only ever the upper bound of a wait.
DEADLINE = float(os.environ.get("FK_TEST_DEADLINE", "30"))


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "NOTIFY_", "WATCHDOG_"))}
    env.pop("SERVICE_NAME", None)
    env.pop("FLEETKEEPER_CONFIG", None)
    env["TZ"] = env.get("TZ", "UTC")
    env.update(extra)
    return env


class Env:
    """A state directory and configuration file for one test."""

    def __init__(self, tmp: Path):
        self.dir = tmp
        self.state = tmp / "var"
        self.conf = tmp / "fleetkeeper.conf"
        self.db = self.state / "state.db"
        self.sock = self.state / "fleetkeeper.sock"
        self.extra_env = {}  # for every command and daemon of this test

    def write_config(self, tasks: str, daemon_extra: str = "", log_level: str = "info",
                     shutdown_grace: str = "10s", metrics_listen=""):
        # Test daemons serve no metrics unless a test asks (metrics_listen=None
        # when the test writes its own [metrics] section).
        metrics = "" if metrics_listen is None else "[metrics]\nlisten = %s\n" % metrics_listen
        self.conf.write_text(
            f"""[daemon]
state_dir = {self.state}
control_socket = {self.sock}
max_concurrent_tasks = 4
shutdown_grace = {shutdown_grace}
{daemon_extra}

[log]
level = {log_level}

{metrics}
{tasks}
"""
        )
        return self.conf

    def run(self, *args, timeout=DEADLINE * 2, env=None, input=None):
        return subprocess.run(
            [BIN, "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or base_env(**self.extra_env),
            input=input,
            cwd=self.dir,
        )

    def start(self, *args):
        """Like run, in the background: the Popen (text pipes) of the command."""
        return subprocess.Popen(
            [BIN, "-c", str(self.conf), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=base_env(**self.extra_env),
            cwd=self.dir,
        )

    def sql(self, query, *params):
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()

    def wait_sql(self, query, pred, *params, deadline=DEADLINE):
        """Poll a query until pred(rows) holds (the store is another process)."""
        end = time.monotonic() + deadline
        rows = None
        while time.monotonic() < end:
            try:
                rows = self.sql(query, *params)
                if pred(rows):
                    return rows
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting on {query!r}: last rows {rows!r}")


def parse_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Daemon:
    """`fleetkeeper run` in the background; its stdout events are collected."""

    def __init__(self, env: Env, extra_env=None):
        self.env = env
        self.proc = subprocess.Popen(
            [BIN, "-c", str(env.conf), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=base_env(**{**env.extra_env, **(extra_env or {})}),
            cwd=env.dir,
            start_new_session=True,
        )
        self.events = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.raw = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.raw.append(line)
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    self.events.append({"event": "__unparsable__", "line": line})
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pred, deadline=DEADLINE, count=1, what=None):
        """Wait until `count` events satisfy pred; returns them."""
        if isinstance(pred, str):
            name = pred
            pred = lambda e: e.get("event") == name  # noqa: E731
            what = what or name
        end = time.monotonic() + deadline
        found, seen = [], 0
        with self.cond:
            while True:
                # only the events that arrived since the last look: a flood
                # of lines must not make every wake-up rescan all of them
                # (the reader would fall behind and the daemon drop lines)
                found += [e for e in self.events[seen:] if pred(e)]
                seen = len(self.events)
                if len(found) >= count:
                    return found
                left = end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(
                        f"no {count} x {what or pred} within {deadline}s; "
                        f"daemon rc={self.proc.poll()} events={[e.get('event') for e in self.events]}"
                    )
                self.cond.wait(min(left, 0.5))

    def named(self, name):
        with self.lock:
            return [e for e in self.events if e.get("event") == name]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, deadline=DEADLINE):
        rc = self.proc.wait(timeout=deadline)
        self.reader.join(timeout=deadline)
        return rc

    def stop(self):
        if self.proc.stdout.closed:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(timeout=5)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        self.proc.stdout.close()
        return err


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


@pytest.fixture
def daemons():
    started = []

    def start(env, **kw):
        d = Daemon(env, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before or while reading
        return False


def wait_until(pred, deadline=DEADLINE, what="condition"):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
