"""The metrics endpoint under attack (issue 15): 500 idle or trickling
connections must not make /metrics or /healthz unreachable for a scraper.

The scraper connects from 127.0.0.1 and asks, once a second, alternately for
/metrics and /healthz, each answer due within 3 s, while an attacker holds
500 connections: idle ones, and slowloris clients sending a header byte
every second. Connections the daemon closes (idle timeout, over an
address's quota) are opened again at once, so 500 are asked for during the
whole attack.

- On loopback (the default `127.0.0.1:9464`) every client is local and
  shares the scraper's address: the attacker connects from 127.0.0.1 too;
  the total connection limit holds them all with room to spare.
- On another address (here `0.0.0.0`: the clients still connect through
  loopback, but the endpoint is not a loopback one) each address has a
  quota of 16: a crowd of 25 addresses at their quota (400), a hog address
  opening 92 (all but 16 refused at once) and 8 slowloris clients from a
  third address; the scraper's address is untouched by them. Linux routes
  all of 127/8 to lo, so the attackers bind 127.0.0.2 and up.

The daemon runs with a soft RLIMIT_NOFILE of 1024 (systemd's default for a
service), so the endpoint's share of descriptors is the one of production.
"""
import contextlib
import os
import resource
import select
import socket
import time

import pytest

from conftest import DEADLINE, ON_PG, wait_until
from prom import free_port
from test_attack_control import vm_kb

DAEMON_NOFILE = 1024        # soft limit of the daemon under attack
PER_IP = 16                 # the endpoint's per-address quota off loopback (metrics_http.c)
HOLD_S = 12.0               # how long each attack lasts
SCRAPE_DEADLINE_S = 3.0     # connect + whole answer, each scrape
SLOW_HEAD = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "

LOOPBACK_ATTACK = [("127.0.0.1", "idle", 492), ("127.0.0.1", "slow", 8)]
QUOTA_ATTACK = ([(f"127.0.0.{i}", "crowd", PER_IP) for i in range(10, 35)]
                + [("127.0.0.2", "hog", 92), ("127.0.0.3", "slow", 8)])


@contextlib.contextmanager
def nofile_soft(limit):
    """The soft RLIMIT_NOFILE of this process (and of what it starts) is
    limit inside the block; at least 2048 again afterwards, for the attack."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        want = 2048 if hard == resource.RLIM_INFINITY else min(hard, max(soft, 2048))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def scrape(port, path):
    """(status, body, seconds) of GET path from 127.0.0.1; status 0 when no
    whole answer came within SCRAPE_DEADLINE_S."""
    t0 = time.monotonic()
    end = t0 + SCRAPE_DEADLINE_S
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=SCRAPE_DEADLINE_S) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            while time.monotonic() < end:
                s.settimeout(max(end - time.monotonic(), 0.01))
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            else:
                return 0, b"", time.monotonic() - t0
    except OSError:
        return 0, b"", time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body, time.monotonic() - t0


class Attack:
    """The attack's sockets, each (socket, source address, kind); kind slow
    trickles a header, the others stay idle. reopened counts, per kind, the
    connections the daemon closed (each was opened again)."""

    def __init__(self, port, groups):
        self.port = port
        self.groups = groups  # [(source address, kind, count)]
        self.socks = {}       # fd -> (socket, addr, kind)
        self.poll = select.poll()
        self.reopened = {kind: 0 for _, kind, _ in groups}

    def open(self, addr, kind):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((addr, 0))
        s.connect_ex(("127.0.0.1", self.port))  # EINPROGRESS: a full backlog must not block us
        self.socks[s.fileno()] = (s, addr, kind)
        self.poll.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
        if kind == "slow":
            self.send(s, SLOW_HEAD)

    @staticmethod
    def send(s, data):
        with contextlib.suppress(OSError):  # not connected yet, or closed: the next round sees it
            s.send(data)

    def start(self):
        for addr, kind, count in self.groups:
            for _ in range(count):
                self.open(addr, kind)

    def refill(self):
        """Open again every connection the daemon closed (or refused)."""
        for fd, _ in self.poll.poll(0):
            s, addr, kind = self.socks.pop(fd)
            self.poll.unregister(fd)
            s.close()
            self.reopened[kind] += 1
            self.open(addr, kind)

    def trickle(self):
        for s, _, kind in list(self.socks.values()):
            if kind == "slow":
                self.send(s, b"a")

    def close(self):
        for s, _, _ in self.socks.values():
            s.close()
        self.socks.clear()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_daemon(env, daemons, listen):
    env.write_config("[task.tick]\ntype = command\nschedule = @every 1s\ncommand = true\n",
                     metrics_listen=listen)
    with nofile_soft(DAEMON_NOFILE):
        d = daemons(env)
        d.wait_for("metrics_listening")
    return d


def hold_attack(d, port, groups):
    """Scrape once a second for HOLD_S while the attack is held; every
    scrape must answer 200 in time and the @every 1s task keep firing.
    Returns (the Attack, closed, the daemon's descriptors before, at peak)."""
    pid = d.proc.pid
    assert scrape(port, "/metrics")[0] == 200
    assert scrape(port, "/healthz")[0] == 200  # its store connection is open from here
    base_fds = open_fds(pid)
    attack = Attack(port, groups)
    scrapes = []  # (path, status, seconds)
    peak_fds = 0
    ticks_before = len(d.named("tick_complete"))
    try:
        attack.start()
        end = time.monotonic() + HOLD_S
        path = "/metrics"
        while time.monotonic() < end:
            round_end = time.monotonic() + 1.0
            attack.refill()
            attack.trickle()
            status, body, took = scrape(port, path)
            scrapes.append((path, status, round(took, 3)))
            assert status == 200, f"{path}: no whole answer within {SCRAPE_DEADLINE_S} s " \
                                  f"({len(attack.socks)} attack sockets): {scrapes}"
            if path == "/metrics":
                assert b"fleetkeeper_events_total" in body
            path = "/healthz" if path == "/metrics" else "/metrics"
            peak_fds = max(peak_fds, open_fds(pid))
            time.sleep(max(round_end - time.monotonic(), 0))
        ticks = len(d.named("tick_complete")) - ticks_before
        assert ticks >= HOLD_S - 3, f"{ticks} runs of an @every 1s task in {HOLD_S} s"
        hwm_kb = vm_kb(pid, "VmHWM")
    finally:
        attack.close()
    print(f"scrapes (path, status, s): {scrapes}; daemon fds {base_fds} -> peak {peak_fds}; "
          f"peak RSS {hwm_kb} kB; closed by the daemon {attack.reopened}")
    # The endpoint keeps half the daemon's descriptors for the rest of it.
    assert peak_fds <= base_fds + DAEMON_NOFILE // 2, (peak_fds, base_fds)
    return attack, base_fds, peak_fds


def assert_healthy_after(d, port, base_fds):
    """Healthy, scheduling, every descriptor of the attack given back, and a
    clean exit (no sanitizer report)."""
    pid = d.proc.pid
    assert scrape(port, "/healthz")[0] == 200
    assert scrape(port, "/metrics")[0] == 200
    ticks = len(d.named("tick_complete"))
    d.wait_for("tick_complete", count=ticks + 1)
    # on PostgreSQL every store connection is a socket, opened on first use
    # (a worker that ran its first task during the attack holds one more)
    slack = 2 + (4 if ON_PG else 0)
    wait_until(lambda: open_fds(pid) <= base_fds + slack, deadline=DEADLINE,
               what=f"the daemon's descriptors back to {base_fds}")
    assert d.proc.poll() is None
    err = d.stop()
    assert d.proc.returncode == 0 and "Sanitizer" not in err and "runtime error" not in err, err


def test_loopback_endpoint_answers_while_500_connections_from_its_address_are_held(env, daemons):
    port = free_port()
    d = start_daemon(env, daemons, f"127.0.0.1:{port}")
    attack, base_fds, peak_fds = hold_attack(d, port, LOOPBACK_ATTACK)
    # All of them were held at once (no quota on loopback), idle ones closed
    # after the idle timeout.
    assert peak_fds >= base_fds + 450, (peak_fds, base_fds)
    assert attack.reopened["idle"] >= 450, attack.reopened
    assert_healthy_after(d, port, base_fds)


def test_endpoint_holds_each_address_to_its_quota_off_loopback(env, daemons):
    port = free_port()
    d = start_daemon(env, daemons, f"0.0.0.0:{port}")
    attack, base_fds, peak_fds = hold_attack(d, port, QUOTA_ATTACK)
    # The crowd was held (each address within its quota), the hog's excess
    # refused at once, the crowd's idle connections closed after the timeout.
    assert peak_fds >= base_fds + 350, (peak_fds, base_fds)
    assert attack.reopened["hog"] >= 92 - PER_IP, attack.reopened
    assert attack.reopened["crowd"] >= 350, attack.reopened
    assert_healthy_after(d, port, base_fds)
