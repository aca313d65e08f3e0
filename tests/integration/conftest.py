"""Integration tests run the real fleetkeeper binary against a real store:
SQLite files by default, or with FK_TEST_BACKEND=postgresql a PostgreSQL that
the suite starts itself (pg.py), one fresh database per Env.

Helpers here: a per-test state directory and configuration, the CLI runner,
and a Daemon that reads the daemon's JSON lines on a thread so that tests
wait on events with a deadline instead of sleeping.
"""
import json
import os
import queue
import re
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

# The store the daemons of this run use: sqlite (the default) or postgresql.
BACKEND = os.environ.get("FK_TEST_BACKEND", "sqlite")
if BACKEND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"FK_TEST_BACKEND={BACKEND!r}: sqlite or postgresql")
ON_PG = BACKEND == "postgresql"
# Errors a poll of the store retries (a table not created yet, a busy file).
STORE_ERRORS = (sqlite3.OperationalError,)
if ON_PG:
    import psycopg2
    import psycopg2.extensions

    import pg

    STORE_ERRORS = (sqlite3.OperationalError, psycopg2.Error)
    # SUM() and friends are NUMERIC on PostgreSQL: give the tests numbers as
    # SQLite would (an int when integral), not Decimals.
    psycopg2.extensions.register_type(psycopg2.extensions.new_type(
        psycopg2.extensions.DECIMAL.values, "FK_NUMERIC",
        lambda v, cur: None if v is None else (int(v) if v.lstrip("-").isdigit() else float(v))))

# The PostgreSQL databases the current test created (dropped after it).
_pg_databases = []


def pg_sql(query):
    """An SQLite-style query (`?` placeholders) for psycopg2: `?` outside
    quotes becomes %s and every literal % is doubled."""
    out, quote = [], None
    for ch in query:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append("%%" if ch == "%" else ch)
    return "".join(out)


_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.I)


class PgCursor:
    """The sqlite3.Cursor surface the tests use, over a psycopg2 cursor."""

    def __init__(self, cur, lastrowid=None):
        self._cur = cur
        self.lastrowid = lastrowid

    @property
    def rowcount(self):
        return self._cur.rowcount

    @property
    def description(self):
        return self._cur.description

    def fetchall(self):
        return self._cur.fetchall() if self._cur.description else []

    def fetchone(self):
        return self._cur.fetchone() if self._cur.description else None

    def __iter__(self):
        return iter(self.fetchall())


class PgConnection:
    """What env.connect() returns on PostgreSQL: sqlite3.Connection's
    execute/executemany/commit/rollback/close and context manager, with
    sqlite's `?` placeholders. An INSERT that gives an identity column
    (id) explicitly advances the table's sequence, as SQLite's rowid would;
    an INSERT's lastrowid is the new row's id."""

    def __init__(self, dsn, autocommit=False):
        self._con = psycopg2.connect(dsn)
        self._con.autocommit = autocommit
        self._identity = {}

    def _identity_col(self, table):
        if table not in self._identity:
            with self._con.cursor() as cur:
                cur.execute("SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid ="
                            " a.attrelid WHERE c.relname = %s AND a.attidentity <> ''",
                            (table.lower(),))
                row = cur.fetchone()
            self._identity[table] = row[0] if row else None
        return self._identity[table]

    def _after_insert(self, query):
        m = _INSERT.match(query)
        if not m:
            return None
        table = m.group(1)
        col = self._identity_col(table)
        if col is None:
            return None
        if col in [c.strip().lower() for c in m.group(2).split(",")]:
            with self._con.cursor() as cur:
                cur.execute(f"SELECT setval(pg_get_serial_sequence(%s, %s),"
                            f" (SELECT COALESCE(MAX({col}), 0) + 1 FROM {table}), false)",
                            (table, col))
        return col

    def execute(self, query, params=()):
        cur = self._con.cursor()
        m = _INSERT.match(query)
        returning = (m and "returning" not in query.lower() and self._identity_col(m.group(1)))
        q = pg_sql(query)
        if returning:
            q = q.rstrip().rstrip(";") + f" RETURNING {returning}"
        cur.execute(q, tuple(params))
        lastrowid = None
        if returning:
            rows = cur.fetchall()
            lastrowid = rows[-1][0] if rows else None
        self._after_insert(query)
        return PgCursor(cur, lastrowid)

    def executemany(self, query, seq):
        cur = self._con.cursor()
        cur.executemany(pg_sql(query), [tuple(p) for p in seq])
        self._after_insert(query)
        return PgCursor(cur)

    def executescript(self, script):
        with self._con.cursor() as cur:
            cur.execute(script)
        self._con.commit()

    def commit(self):
        self._con.commit()

    def rollback(self):
        self._con.rollback()

    def close(self):
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # like sqlite3: the block is a transaction, the connection stays open
        if exc_type is None:
            self._con.commit()
        else:
            self._con.rollback()
        return False


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
        self.pg = None
        self.dbname = None
        if ON_PG:
            self.pg = pg.server()
            self.dbname = self.pg.new_database()
            _pg_databases.append((self.pg, self.dbname))
        self._sql_con = None
        # a test's own dsn for the config (test_store_pg.py), whatever the backend
        self.store_dsn = None

    @property
    def dsn(self):
        """The daemon's libpq connection string (PostgreSQL only)."""
        return self.pg.dsn(self.dbname) if self.pg else None

    def store_section(self):
        """The [store] section of this run's backend ("" on SQLite)."""
        dsn = self.store_dsn or (self.dsn if ON_PG else None)
        if not dsn:
            return ""
        return f"[store]\nbackend = postgresql\ndsn = {dsn}\n"

    def ensure_store(self, conf=None):
        """On PostgreSQL, a config the test wrote itself gets the [store]
        section (appended: the test's line numbers stay) unless it has one.
        Binary, huge or special files (the attack tests') are left alone."""
        conf = Path(conf or self.conf)
        if not ON_PG or conf.is_symlink() or not conf.is_file():
            return
        if conf.stat().st_size > 32768:
            return
        data = conf.read_bytes()
        if b"[store]" in data or b"\0" in data:
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return
        sep = "" if text.endswith("\n") or not text else "\n"
        conf.write_text(text + sep + "\n" + self.store_section())

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

{self.store_section()}
{metrics}
{tasks}
"""
        )
        return self.conf

    def run(self, *args, timeout=DEADLINE * 2, env=None, input=None):
        if args[:1] != ("check-config",):  # a check of the test's own text (garbage too)
            self.ensure_store()
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
        self.ensure_store()
        return subprocess.Popen(
            [BIN, "-c", str(self.conf), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=base_env(**self.extra_env),
            cwd=self.dir,
        )

    def connect(self, timeout=10, autocommit=False):
        """A read-write connection to this test's store: a sqlite3.Connection
        on SQLite, a PgConnection (the same calls, `?` placeholders) on
        PostgreSQL. Only portable SQL, please."""
        if ON_PG:
            return PgConnection(self.dsn, autocommit=autocommit)
        return sqlite3.connect(self.db, timeout=timeout,
                               **({"isolation_level": None} if autocommit else {}))

    def exec_sql(self, query, *params):
        """One statement, committed."""
        con = self.connect()
        try:
            con.execute(query, params)
            con.commit()
        finally:
            con.close()

    def sql(self, query, *params):
        """The rows of a read-only query."""
        if ON_PG:
            if self._sql_con is None:
                self._sql_con = PgConnection(self.dsn, autocommit=True)
            try:
                return self._sql_con.execute(query, params).fetchall()
            except psycopg2.Error:
                # a dead connection (the server restarted) is opened again
                if self._sql_con._con.closed:
                    self._sql_con = None
                raise
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()

    def store_exists(self):
        """True once the daemon or a command has created the store."""
        if ON_PG:
            try:
                return bool(self.sql("SELECT 1 FROM pg_tables WHERE tablename = 'schema_version'"
                                     " OR tablename = 'task_runs'"))
            except psycopg2.Error:
                return False
        return self.db.exists()

    def dump(self):
        """The whole store as text (sqlite3 .dump / pg_dump), for secret scans."""
        if ON_PG:
            cmd = [str(pg.PG_BIN / "pg_dump"), "--data-only", "--no-owner", self.dsn]
        else:
            cmd = ["sqlite3", str(self.db), ".dump"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE * 2)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def close(self):
        if self._sql_con is not None:
            try:
                self._sql_con.close()
            except Exception:
                pass
            self._sql_con = None

    def wait_sql(self, query, pred, *params, deadline=DEADLINE):
        """Poll a query until pred(rows) holds (the store is another process)."""
        end = time.monotonic() + deadline
        rows, err = None, None
        while time.monotonic() < end:
            try:
                rows = self.sql(query, *params)
                if pred(rows):
                    return rows
            except STORE_ERRORS as e:
                err = e
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting on {query!r}: last rows {rows!r}, last error {err!r}")


def failing_trigger(name, table, timing, message, when=None):
    """The statements of a trigger that makes `timing` (e.g. "BEFORE INSERT",
    "BEFORE UPDATE OF status") on table fail with message, on this run's
    backend; the store's writes then fail as they would on a real fault."""
    if ON_PG:
        cond = f" WHEN ({when})" if when else ""
        return [f"CREATE OR REPLACE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS"
                f" $$BEGIN RAISE EXCEPTION '{message}'; END$$",
                f"CREATE TRIGGER {name} {timing} ON {table} FOR EACH ROW{cond}"
                f" EXECUTE FUNCTION {name}_fn()"]
    cond = f" WHEN {when}" if when else ""
    return [f"CREATE TRIGGER {name} {timing} ON {table}{cond}"
            f" BEGIN SELECT RAISE(ABORT, '{message}'); END"]


def drop_trigger(name, table):
    return [f"DROP TRIGGER {name} ON {table}" if ON_PG else f"DROP TRIGGER {name}"]


def parse_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Daemon:
    """`fleetkeeper run` in the background; its stdout events are collected."""

    def __init__(self, env: Env, extra_env=None):
        self.env = env
        env.ensure_store()
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


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only(reason): the test is about the SQLite file;"
                            " skipped on PostgreSQL")


def pytest_collection_modifyitems(config, items):
    if not ON_PG:
        return
    for item in items:
        m = item.get_closest_marker("sqlite_only")
        if m is not None:
            why = m.args[0] if m.args else m.kwargs.get("reason", "")
            item.add_marker(pytest.mark.skip(
                reason="about the SQLite file" + (f" ({why})" if why else "")))


@pytest.fixture(autouse=True)
def _pg_databases_dropped():
    """The databases a test's Envs created are dropped after it (after the
    daemons fixture stopped its daemons: autouse fixtures end last)."""
    yield
    while _pg_databases:
        srv, name = _pg_databases.pop()
        srv.drop_database(name)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


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
