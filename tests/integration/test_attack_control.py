"""The control socket under attack (issue 15): clients that flood status
requests and never read must not take the daemon's memory or its schedule;
replies are valid UTF-8 JSON whatever a request holds, and an embedded NUL
is refused; `status` tells a daemon that does not answer from no daemon."""
import json
import select
import signal
import socket
import time

from conftest import BIN, DEADLINE
from faults import rss_kb
from test_faults import _ask as ask
from test_faults import _is_sanitized

FAR_TASKS = "".join(
    f"\n[task.far{i:02d}]\ntype = command\nschedule = 0 0 1 1 *\ncommand = true\n" for i in range(30)
)


def started(d):
    return d.wait_for("scheduler_started")[0]


def strict_json(raw):
    """One reply line that must be valid UTF-8 and valid JSON."""
    assert raw.endswith(b"\n"), raw
    return json.loads(raw.decode("utf-8", errors="strict"))


def vm_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def flood(sock_path, clients, seconds):
    """clients sockets send {"cmd":"status"} lines for seconds and never read.
    Returns (the sockets, still open; bytes the daemon took)."""
    chunk = b'{"cmd":"status"}\n' * (65536 // 17)
    socks = []
    for _ in range(clients):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock_path))
        s.setblocking(False)
        socks.append(s)
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _, writable, _ = select.select([], socks, [], 0.2)
        for s in writable:
            try:
                sent += s.send(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
    return socks, sent


def test_status_flood_that_never_reads_keeps_memory_and_schedule(env, daemons):
    env.write_config("[task.tick]\ntype = command\nschedule = @every 1s\ncommand = true\n" + FAR_TASKS)
    d = daemons(env)
    started(d)
    d.wait_for("tick_complete")
    pid = d.proc.pid
    base_kb = rss_kb(pid)
    t0 = time.time()
    socks, sent = flood(env.sock, 16, 20.0)
    t1 = time.time()
    peak_kb = vm_kb(pid, "VmHWM")
    # The daemon still answers a new client while the flooders hold on.
    assert strict_json(ask(env.sock, b'{"cmd": "ping"}\n')) == {"ok": True}
    for s in socks:
        s.close()
    # Every fire from before the flood to its end (the stored runs): they are
    # due on a 1 s grid, so each one's lateness is measured against the grid
    # anchored at the earliest-aligned fire (a stall shifts every later one).
    starts = [r[0] for r in env.sql(
        "SELECT started_at FROM task_runs WHERE task = 'tick' AND started_at <= ?"
        " ORDER BY started_at", t1)]
    anchor = min(t - k for k, t in enumerate(starts))
    late = [t - k - anchor for k, t in enumerate(starts)]
    during = [t for t in starts if t >= t0]
    print(f"flood: sent {sent} bytes, rss {base_kb} KiB -> peak {peak_kb} KiB, "
          f"{len(during)} fires in {t1 - t0:.1f} s, max lateness {max(late):.3f} s")
    assert sent >= 16 * 65536, sent  # every client got its 64 KiB in
    assert max(late) <= 1.0, late
    assert len(during) >= int(t1 - t0) - 1, during
    if not _is_sanitized(BIN):  # ASan's quarantine and shadow make RSS meaningless
        assert peak_kb < 64 * 1024, (base_kb, peak_kb)
    assert d.proc.poll() is None


def test_replies_are_valid_utf8_json_and_nul_is_refused(env, daemons):
    env.write_config("[task.a]\ntype = command\nschedule = 0 0 1 1 *\ncommand = true\n")
    d = daemons(env)
    started(d)
    sock = env.sock
    # Invalid UTF-8 in a request is refused, never echoed raw.
    for payload in (b'{"cmd": "trigger", "task": "\xff\xfe"}\n', b'{"cmd": "\xc3("}\n',
                    b'{"cmd": "st\xed\xa0\x80"}\n', b'{"cmd": "\xc0\xaf"}\n'):
        r = strict_json(ask(sock, payload))
        assert r["ok"] is False and "UTF-8" in r["error"], (payload, r)
    # Valid UTF-8 quoted in a message is cut on a character boundary.
    name = "a" * 127 + "\u00e9"
    r = strict_json(ask(sock, json.dumps({"cmd": "trigger", "task": name}).encode() + b"\n"))
    assert r["ok"] is False and r["error"] == "unknown task '" + "a" * 127 + "'", r
    r = strict_json(ask(sock, '{"cmd": "trigger", "task": "caf\u00e9"}\n'.encode()))
    assert r["error"] == "unknown task 'caf\u00e9'", r
    # A NUL, escaped or raw, is refused instead of ending the string early.
    for payload in (b'{"cmd": "status\\u0000x"}\n', b'{"cmd": "trigger", "task": "a\\u0000"}\n',
                    b'{"cmd": "status"}\x00x\n'):
        r = strict_json(ask(sock, payload))
        assert r["ok"] is False and "NUL" in r["error"], (payload, r)
    # An escaped backslash before "u0000" is no NUL.
    r = strict_json(ask(sock, b'{"cmd": "trigger", "task": "a\\\\u0000"}\n'))
    assert r["error"] == "unknown task 'a\\u0000'", r
    assert strict_json(ask(sock, b'{"cmd": "status"}\n'))["ok"] is True
    assert d.proc.poll() is None


def test_status_without_daemon_is_stored_state_exit_0(env):
    env.write_config("[task.a]\ntype = command\ncommand = true\n")
    r = env.run("status")
    assert r.returncode == 0, r
    assert r.stdout.startswith("daemon: not running (stored state)"), r.stdout
    r = env.run("status", "--json")
    st = json.loads(r.stdout)
    assert r.returncode == 0 and st["daemon"] is None and st["daemon_state"] == "not_running"


def test_status_of_a_stopped_daemon_says_so_and_fails(env, daemons):
    env.write_config("[task.a]\ntype = command\nschedule = 0 0 1 1 *\ncommand = true\n")
    d = daemons(env)
    started(d)
    pid = d.proc.pid
    backlog = []
    d.signal(signal.SIGSTOP)
    try:
        t = time.monotonic()
        r = env.run("status", timeout=30)
        took = time.monotonic() - t
        assert r.returncode == 1, r
        assert f"daemon: not answering (pid {pid} holds the lock): no reply" in r.stdout, r.stdout
        assert f"pid {pid}" in r.stderr and "does not answer" in r.stderr, r.stderr
        assert took < 15, took
        # The listen backlog full: connect itself must give up in time.
        for _ in range(40):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(str(env.sock))
            except BlockingIOError:
                s.close()
                break
            backlog.append(s)
        t = time.monotonic()
        r = env.run("status", "--json", timeout=30)
        took = time.monotonic() - t
        st = json.loads(r.stdout)
        assert r.returncode == 1 and st["daemon_state"] == "not_answering", r
        assert st["daemon_pid"] == pid and "backlog is full" in st["daemon_error"], st
        assert took < 15, took
    finally:
        for s in backlog:
            s.close()
        d.signal(signal.SIGCONT)
    r = env.run("status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["daemon"]["pid"] == pid


def test_status_when_the_daemon_has_too_many_clients(env, daemons):
    env.write_config("[task.a]\ntype = command\nschedule = 0 0 1 1 *\ncommand = true\n")
    d = daemons(env)
    started(d)
    crowd = []
    try:
        for _ in range(64):  # CONTROL_MAX_CLIENTS, each one accepted (it got a pong)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(DEADLINE)
            s.connect(str(env.sock))
            s.sendall(b'{"cmd": "ping"}\n')
            assert s.recv(100).startswith(b'{"ok"')
            crowd.append(s)
        r = env.run("status")
        assert r.returncode == 1, r
        assert "not answering" in r.stdout and "too many clients" in r.stdout, r.stdout
    finally:
        for s in crowd:
            s.close()
    assert d.proc.poll() is None
