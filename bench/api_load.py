#!/usr/bin/env python3
"""Load on the HTTP API over loopback (issue 18): CLIENTS concurrent clients
for SECONDS against GET /api/v1/status (keep-alive connections) and the SSE
stream of a running run (GET /api/v1/runs/{id}/events?follow=1), while a
task fires every 2 s. Bounded and self-stopping: every client stops at the
deadline, the daemon gets SIGTERM at the end.

Prints one JSON line: requests per second, p50/p99 latency of /status, SSE
streams opened and events received, the daemon's peak and final RSS, and
whether the schedule kept up (fires of the 2 s task against the expected
count).

  bench/api_load.py BUILD/fleetkeeper [SECONDS] [CLIENTS]
"""
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TOKEN = "bench-token-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    binary = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    sse_clients = max(1, clients // 20)
    tmp = Path(tempfile.mkdtemp(prefix="fk-api-load-"))
    port = free_port()
    (tmp / "t").write_text(TOKEN + "\n")
    (tmp / "t").chmod(0o600)
    conf = tmp / "fk.conf"
    conf.write_text(f"""[daemon]
state_dir = {tmp}/var
[metrics]
listen =
[api]
listen = 127.0.0.1:{port}
[api.token.bench]
token_file = {tmp}/t
scope = operate
[task.tick]
type = command
command = true
schedule = @every 2s
[task.long]
type = command
command = sleep {int(seconds) + 30}
schedule = @every 1h
""")
    log = open(tmp / "daemon.log", "w")
    d = subprocess.Popen([binary, "-c", str(conf), "run"], stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        load(d, port, tmp, log, seconds, clients, sse_clients)
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def load(d, port, tmp, log, seconds, clients, sse_clients):
    hdr = {"Authorization": "Bearer " + TOKEN}
    deadline = time.monotonic() + 20
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/v1/status", headers=hdr)
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or d.poll() is not None:
            raise SystemExit("the daemon did not start: see " + str(tmp / "daemon.log"))
        time.sleep(0.1)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/api/v1/tasks/long/trigger", body=b"{}", headers=hdr)
    reply = json.loads(c.getresponse().read())
    if "run_id" not in reply:
        raise SystemExit("trigger: %r" % reply)
    run_id = reply["run_id"]

    lat, errors, sse_events, sse_opened = [], [0], [0], [0]
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + seconds
    peak = [0]

    def status_client():
        conn, mine, errs = None, [], 0
        while time.monotonic() < stop_at:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                t0 = time.perf_counter()
                conn.request("GET", "/api/v1/status", headers=hdr)
                r = conn.getresponse()
                r.read()
                mine.append(time.perf_counter() - t0)
                if r.status != 200:
                    errs += 1
            except (OSError, http.client.HTTPException):
                errs += 1
                conn = None
        with lock:
            lat.extend(mine)
            errors[0] += errs

    def sse_client():
        n = opened = 0
        while time.monotonic() < stop_at:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(f"GET /api/v1/runs/{run_id}/events?follow=1 HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
                opened += 1
                while time.monotonic() < stop_at:
                    try:
                        data = s.recv(65536)
                    except socket.timeout:
                        continue
                    if not data:
                        break
                    n += data.count(b"\ndata: ")
                s.close()
            except OSError:
                time.sleep(0.1)
        with lock:
            sse_events[0] += n
            sse_opened[0] += opened

    threads = [threading.Thread(target=status_client) for _ in range(clients - sse_clients)]
    threads += [threading.Thread(target=sse_client) for _ in range(sse_clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], rss_kb(d.pid))
        time.sleep(0.5)
    elapsed = time.monotonic() - start
    final_rss = rss_kb(d.pid)
    d.send_signal(signal.SIGTERM)
    rc = d.wait(timeout=60)
    log.close()
    fires = sum(1 for line in open(tmp / "daemon.log")
                if '"event": "tick_complete"' in line)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else None  # noqa
    print(json.dumps({
        "bench": "api_load", "clients": clients, "sse_clients": sse_clients,
        "seconds": round(elapsed, 1), "requests": len(lat),
        "requests_per_sec": round(len(lat) / elapsed, 1), "errors": errors[0],
        "p50_ms": round(q(0.50), 2), "p99_ms": round(q(0.99), 2),
        "max_ms": round(lat[-1] * 1000, 2) if lat else None,
        "sse_streams_opened": sse_opened[0], "sse_events": sse_events[0],
        "rss_peak_kb": peak[0], "rss_final_kb": final_rss,
        "tick_fires": fires, "tick_expected": int(elapsed // 2),
        "daemon_exit": rc}))


if __name__ == "__main__":
    main()
