"""A real OpenSSH sshd on loopback for the SSH tests, with generated keys.

Sshd(tmp) generates a host key and a client key with ssh-keygen, writes an
sshd_config (UsePAM no, private PidFile, AuthorizedKeysFile in the temp
directory, StrictModes no) and starts `sshd -D -e -f CONFIG` listening on
127.0.0.1 (and any extra 127.0.0.x addresses) on free ports; it waits for
the ports to accept with a deadline, never a sleep. SilentListener accepts
TCP connections and never says a word; FullBacklogListener is a port whose
full listen queue makes a TCP connect hang. Only 127.0.0.0/8 is ever used.

Sshd(..., password_auth=True) also accepts passwords (no user here has one
that works, so a password offered shows up as a failed attempt), and
log_level="DEBUG1" (or VERBOSE) writes sshd's log to a file (-E) that
log() returns, e.g. to prove which authentication methods a client tried.

MaxStartups is 10000:30:10000 (OpenSSH's default 10:30:100 drops most of
a thousand handshakes at once: the benchmarks open that many).

Also imported by bench/health.sh and bench/health_scale.sh.
"""
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
DEADLINE = float(os.environ.get("FK_TEST_DEADLINE", "30"))


def have_sshd():
    return os.path.exists(SSHD) and os.path.exists(SSH_KEYGEN) and os.geteuid() == 0


def free_port(addr="127.0.0.1"):
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def closed_port():
    """A loopback port with nobody listening (bound, then released)."""
    return free_port()


def keygen(path: Path, kind="ed25519", passphrase=""):
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", passphrase, "-C", "fk-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return path


def wait_accepting(addr, port, deadline=DEADLINE, proc=None):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sshd exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with socket.create_connection((addr, port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"{addr}:{port} does not accept within {deadline}s")


class Sshd:
    def __init__(self, tmp: Path, name="sshd", addrs=("127.0.0.1",), nports=1, host_key=None,
                 client_key=None, password_auth=False, log_level="ERROR", extra_args=(),
                 extra_config=""):
        self.dir = Path(tmp) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host_key = host_key or keygen(self.dir / "host_ed25519")
        self.client_key = Path(client_key) if client_key else self.dir / "client_ed25519"
        if not self.client_key.exists():
            keygen(self.client_key)
        self.authorized = self.dir / "authorized_keys"
        self.authorized.write_text(Path(str(self.client_key) + ".pub").read_text())
        self.addrs = list(addrs)
        self.ports = [free_port() for _ in range(nports)]
        self.endpoints = [(a, p) for a in self.addrs for p in self.ports]
        self.proc = None
        self.conf = self.dir / "sshd_config"
        self.extra_config = extra_config
        self.password_auth = password_auth
        self.log_level = log_level
        self.log_path = self.dir / "sshd.log" if log_level != "ERROR" else None
        self.extra_args = list(extra_args)  # e.g. ["-r"]: no re-exec per connection

    @property
    def port(self):
        return self.ports[0]

    def host_pub(self):
        return Path(str(self.host_key) + ".pub").read_text().split()[:2]

    def known_hosts_line(self, addr="127.0.0.1", port=None):
        port = port or self.port
        name = addr if port == 22 else f"[{addr}]:{port}"
        kind, key = self.host_pub()
        return f"{name} {kind} {key}\n"

    def write_config(self):
        listen = "".join(f"ListenAddress {a}:{p}\n" for a, p in self.endpoints)
        self.conf.write_text(
            f"""{listen}HostKey {self.host_key}
PidFile {self.dir / 'sshd.pid'}
AuthorizedKeysFile {self.authorized}
UsePAM no
StrictModes no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication {'yes' if self.password_auth else 'no'}
KbdInteractiveAuthentication no
MaxStartups 10000:30:10000
MaxSessions 100
LoginGraceTime 60
UseDNS no
SetEnv HOME={self.dir}
PrintMotd no
LogLevel {self.log_level}
{self.extra_config}"""
        )

    def start(self):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.write_config()
        log = ["-E", str(self.log_path)] if self.log_path else []
        self.proc = subprocess.Popen([SSHD, "-D", "-e", *log, *self.extra_args, "-f", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        for a, p in self.endpoints:
            wait_accepting(a, p, proc=self.proc)
        return self

    def log(self):
        """The log so far ("" unless started with a log_level)."""
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None


class SilentListener:
    """Accepts TCP connections on 127.0.0.x and never sends a byte."""

    def __init__(self, addr="127.0.0.1", port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(512)
        self.addr, self.port = self.sock.getsockname()
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)
        for c in self.conns:
            c.close()


class FullBacklogListener:
    """A loopback port whose listen queue is full: a TCP connect to it never
    completes (the kernel drops the SYN while the accept queue is full, and
    nobody accepts), so a client waits in connect until its own deadline."""

    def __init__(self, addr="127.0.0.1"):
        self.sock = socket.socket()
        self.sock.bind((addr, 0))
        self.sock.listen(0)  # a queue of one
        self.addr, self.port = self.sock.getsockname()
        self.fillers = []
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:  # fill the queue until a connect hangs
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex((self.addr, self.port))
            self.fillers.append(c)
            _, w, _ = select.select([], [c], [], 0.2)
            if not w:
                return
        raise AssertionError("the listen queue never filled")

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()
