"""A throwaway PostgreSQL 15 cluster for the integration tests (issue 17).

One server per pytest session, started on first use (server()) and stopped
at exit (atexit, also when pytest dies of an exception). initdb refuses to
run as root: as root the cluster belongs to the `postgres` user, otherwise
to the current user. The server listens on a unix socket in its temporary
directory and on 127.0.0.1 with a free port.

Roles: ROLE (trust) owns every test database and is who the daemons connect
as; PW_ROLE has a password and must authenticate over TCP (scram-sha-256),
for the passfile test (test_store_pg.py). Each Env gets its own database
(new_database), dropped when the test ends.
"""
import atexit
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("FK_PG_BIN", "/usr/lib/postgresql/15/bin"))
ROLE = "fk"
PW_ROLE = "fk_pw"
PW_ROLE_PASSWORD = "pw-Zq81-never-logged"  # the passfile test's; never in a config

_lock = threading.Lock()
_server = None
_counter = itertools.count(1)


def available():
    return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running cluster: host (the socket dir), port, and admin helpers."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="fk-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.host = str(self.root / "sock")
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.user = None  # the OS user that owns the cluster
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            self.superuser = "postgres"
        else:
            pw = pwd.getpwuid(os.geteuid())
            self.superuser = pw.pw_name
        os.mkdir(self.host, 0o755)
        os.mkdir(self.data, 0o700)
        for p in (self.root, self.host, self.data):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        self._started = False
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _as_owner(self, argv):
        if self.user:
            return ["runuser", "-u", self.user, "--", *argv]
        return argv

    def _run(self, argv, **kw):
        return subprocess.run(self._as_owner(argv), capture_output=True, text=True,
                              cwd=self.root, timeout=120, **kw)

    def _start(self):
        r = self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "--locale=C", "-E", "UTF8",
                       "--auth=trust", "-U", self.superuser, "--no-sync"])
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stdout}{r.stderr}")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.host}'
unix_socket_permissions = 0777
max_connections = 300
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_connections = off
""")
        # the password role authenticates over TCP only (the passfile
        # test); every other role is trusted on the socket and 127.0.0.1
        (self.data / "pg_hba.conf").write_text(
            f"host all {PW_ROLE} 127.0.0.1/32 scram-sha-256\n"
            f"local all {PW_ROLE} reject\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n")
        r = self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                       "-w", "-t", "60", "start"])
        if r.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}{log}")
        self._started = True
        self.admin(f"CREATE ROLE {ROLE} LOGIN")
        self.admin(f"CREATE ROLE {PW_ROLE} LOGIN PASSWORD '{PW_ROLE_PASSWORD}'")

    def stop(self):
        if self._started:
            self._started = False
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                       "stop"])
        shutil.rmtree(self.root, ignore_errors=True)

    def pid(self):
        """The postmaster's pid (postmaster.pid's first line)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def pg_ctl(self, *args):
        """pg_ctl on this cluster (tests that stop and start PostgreSQL)."""
        return self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-w", "-t", "60", *args])

    def dsn(self, dbname, user=ROLE, tcp=False):
        host = "127.0.0.1" if tcp else self.host
        return f"host={host} port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname="postgres", user=None):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, dbname=dbname,
                                user=user or self.superuser)

    def admin(self, *statements, dbname="postgres"):
        """Run statements as the superuser, each in autocommit."""
        con = self.connect(dbname)
        try:
            con.autocommit = True
            with con.cursor() as cur:
                for st in statements:
                    cur.execute(st)
                    if cur.description is not None:
                        last = cur.fetchall()
            return locals().get("last")
        finally:
            con.close()

    def new_database(self, owner=ROLE):
        name = f"fk_{os.getpid()}_{next(_counter)}"
        self.admin(f"CREATE DATABASE {name} OWNER {owner}")
        return name

    def drop_database(self, name):
        try:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except Exception:  # the server is being stopped by a test: its files go anyway
            pass


def server():
    """The session's server, started on first use."""
    global _server
    with _lock:
        if _server is None:
            _server = Server()
            atexit.register(_stop)
            # a SIGTERM to pytest must not leave a postmaster behind
            prev = signal.getsignal(signal.SIGTERM)

            def on_term(sig, frame):
                _stop()
                if callable(prev):
                    prev(sig, frame)
                raise SystemExit(128 + sig)

            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, on_term)
        return _server


def _stop():
    global _server
    if _server is not None:
        s, _server = _server, None
        s.stop()


def started():
    return _server is not None


def stop():
    _stop()


def wait_accepting(srv, deadline=60.0):
    """Until the server answers (after a test restarted it)."""
    end = time.monotonic() + deadline
    while True:
        try:
            srv.admin("SELECT 1")
            return
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)
