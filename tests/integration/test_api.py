"""The HTTP API and status page ([api], docs/api.md) against a real daemon
over real HTTP on 127.0.0.1, with real tokens.

Every request goes through Api.call, which records (path template, method,
status): the last tests check that set against docs/api/openapi.yaml (every
documented status code of every operation exercised, nothing answered that
is not documented) and validate the document with @redocly/cli. The status
page is driven in Debian's chromium with playwright-core
(tests/integration/apicheck/page.cjs).
"""
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, DEADLINE, Env
from prom import free_port
from test_faults import _is_sanitized

APICHECK = Path(__file__).resolve().parent / "apicheck"
OPENAPI = ROOT / "docs" / "api" / "openapi.yaml"
CHROMIUM = shutil.which("chromium")

TOKENS = {"read": "rd-" + "a1b2c3d4e5f60718293a", "operate": "op-" + "f0e1d2c3b4a596877869",
          "admin": "ad-" + "0123456789abcdefabcd"}
TOKEN_NAMES = {"read": "viewer", "operate": "ops", "admin": "root"}

# (template, method, status) of every answer the tests saw
SEEN = set()


class Api:
    def __init__(self, port, scheme="http", context=None):
        self.port = port
        self.scheme = scheme
        self.context = context

    def conn(self, timeout=DEADLINE):
        if self.scheme == "https":
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(self, method, template, params=None, token="read", body=None, headers=None,
             query="", record=True):
        """(status, headers, parsed body). template: the OpenAPI path; params
        fill its {names}; body: a dict (JSON), bytes or str sent as is."""
        path = re.sub(r"\{(\w+)\}", lambda m: str((params or {})[m.group(1)]), template)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + TOKENS.get(token, token)
        data = None
        if body is not None:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            if isinstance(data, str):
                data = data.encode()
            h.setdefault("Content-Type", "application/json")
        c = self.conn()
        try:
            c.request(method, path + (("?" + query) if query else ""), body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()
        if record:
            SEEN.add((template, method.lower(), r.status))
        ctype = hdrs.get("content-type", "")
        parsed = json.loads(raw) if ctype.startswith("application/json") else raw.decode()
        if r.status >= 400:
            assert set(parsed) == {"error", "error_type"}, parsed
        return r.status, hdrs, parsed


def write_tokens(tmp):
    out = ""
    for scope, tok in TOKENS.items():
        f = tmp / f"{scope}.token"
        f.write_text(tok + "\n")
        f.chmod(0o600)
        out += f"[api.token.{TOKEN_NAMES[scope]}]\ntoken_file = {f}\nscope = {scope}\n\n"
    return out


class ApiEnv:
    """A daemon with the API on a free port, tokens of each scope, tasks
    hello (quick) and slow (2 s, overlap skip), server web-1 with an open
    incident."""

    def __init__(self, tmp, daemons, api_extra="", tasks="", env=None, metrics_listen=""):
        self.env = env or Env(tmp)
        self.port = free_port()
        self.api_section = (f"[api]\nlisten = 127.0.0.1:{self.port}\n{api_extra}\n"
                            + write_tokens(tmp))
        if env is None:
            self.env.write_config(self.api_section + TASKS + tasks,
                                  metrics_listen=metrics_listen)
            r = self.env.run("services", "list")  # creates the store
            assert r.returncode == 0, r.stderr
            self.add_server("web-1")
        else:
            self.env.conf.write_text(self.env.conf.read_text() + "\n" + self.api_section)
        self.d = daemons(self.env)
        self.d.wait_for("api_listening")
        self.d.wait_for("scheduler_started")
        self.api = Api(self.port)

    def exec_sql(self, query, *params):
        self.env.exec_sql(query, *params)

    def add_server(self, handle):
        now = time.time()
        self.exec_sql("INSERT INTO servers(handle, ip, port, ssh_user, status, is_managed,"
                      " created_at, updated_at, last_health_check, response_time_ms,"
                      " consecutive_failures) VALUES (?, '127.0.0.1', 22, 'root', 'error', 1,"
                      " ?, ?, ?, 12.5, 3)", handle, now, now, now)
        self.exec_sql("INSERT INTO incidents(server_id, type, status, detected_at, updated_at,"
                      " correlation_id) SELECT id, 'server_unreachable', 'detected', ?, ?,"
                      " 'run_health_1_abcd' FROM servers WHERE handle = ?", now, now, handle)

    def stop_clean(self):
        """SIGTERM: exit 0, no sanitizer report, no token on stderr."""
        err = self.d.stop()
        assert self.d.proc.returncode == 0, err[-3000:]
        for bad in ("Sanitizer", "runtime error:"):
            assert bad not in err, err[-3000:]
        for tok in TOKENS.values():
            assert tok not in err

    def no_secrets(self):
        """No token anywhere: stdout, stderr so far, the store."""
        with self.d.lock:
            out = "".join(self.d.raw)
        dump = self.env.dump()
        for tok in TOKENS.values():
            assert tok not in out and tok not in dump


TASKS = """
[task.hello]
type = command
command = echo hello from the api test
schedule = @every 1h

[task.slow]
type = command
command = sleep 2
schedule = @every 1h
overlap = skip
"""


@pytest.fixture
def fk(tmp_path, daemons):
    return ApiEnv(tmp_path, daemons)


def documented_ops():
    spec = yaml.safe_load(OPENAPI.read_text())
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield path, method, op


SAMPLE = {"name": "hello", "id": 1, "handle": "web-1", "correlation_id": "req_none"}


def test_public_paths_tokens_and_the_failed_auth_limit(fk):
    api = fk.api
    st, h, body = api.call("GET", "/healthz", token=None)
    assert st == 200 and body == {"status": "ok", "public_status": False}
    for path, ctype in (("/", "text/html"), ("/app.js", "text/javascript"),
                        ("/app.css", "text/css")):
        st, h, body = api.call("GET", path, token=None)
        assert st == 200 and h["content-type"].startswith(ctype)
        assert "http://" not in body.replace("http://www.w3.org/2000/svg", "")  # no CDN
    assert "default-src 'none'" in api.call("GET", "/", token=None)[1]["content-security-policy"]
    # every authenticated operation: 401 without a token, also unknown paths
    secured = [(p, m) for p, m, op in documented_ops() if op.get("security") != []]
    assert len(secured) >= 20
    for path, method in secured:
        st, h, body = api.call(method.upper(), path, SAMPLE, token=None)
        assert st == 401 and body["error_type"] == "unauthorized", (path, method)
        assert h["www-authenticate"].startswith("Bearer")
    assert api.call("GET", "/api/v1/nothing", token=None, record=False)[0] == 401
    # the overview is not public unless public_status = true
    assert api.call("GET", "/api/v1/overview", token=None)[0] == 401
    # a bad X-Correlation-ID everywhere: 400
    for path, method, _ in documented_ops():
        for bad in ("has space", "x" * 65, "semi;colon", "ünï"):
            st, _, body = api.call(method.upper(), path, SAMPLE,
                                   headers={"X-Correlation-ID": bad.encode().decode("latin-1")})
            assert st == 400 and body["error_type"] == "invalid_correlation_id", (path, bad)
    # the right token works; wrong ones are counted per address
    assert api.call("GET", "/api/v1/status")[0] == 200
    for i in range(10):
        st, _, body = api.call("GET", "/api/v1/status", token="wrong-token-%02d-xxxxxxxx" % i)
        assert st == 401 and body == {"error": "invalid token", "error_type": "unauthorized"}
    for path, method in secured:
        st, h, body = api.call(method.upper(), path, SAMPLE)  # even with the right token
        assert st == 429 and body["error_type"] == "rate_limited", (path, method)
        assert 1 <= int(h["retry-after"]) <= 61
    assert api.call("GET", "/healthz", token=None)[0] == 200
    fk.d.wait_for(lambda e: e.get("event") == "http_request" and e.get("status_code") == 429)
    reqs = fk.d.named("http_request")
    ok = [e for e in reqs if e["status_code"] == 200 and e["path"] == "/api/v1/status"]
    assert ok and ok[0]["caller"] == "viewer" and ok[0]["method"] == "GET"
    assert ok[0]["route"] == "/api/v1/status" and ok[0]["duration_ms"] >= 0
    assert all("client" in e for e in reqs)
    fk.no_secrets()
    fk.stop_clean()


def test_scopes_allow_and_refuse(fk):
    api = fk.api
    st, _, body = api.call("GET", "/api/v1/status")
    assert st == 200 and body["api"] == {"token": "viewer", "scope": "read"}
    assert [t["name"] for t in body["tasks"]] == ["hello", "slow"]
    for scope in ("operate", "admin"):
        assert api.call("GET", "/api/v1/status", token=scope)[2]["api"]["scope"] == scope
    operate = [(p, m) for p, m, op in documented_ops() if op.get("x-scope") == "operate"]
    assert len(operate) == 8
    for path, method in operate:
        st, _, body = api.call(method.upper(), path, SAMPLE, token="read", body={})
        assert st == 403 and body["error_type"] == "forbidden", (path, method)
    for path in ("/api/v1/tasks", "/api/v1/servers", "/api/v1/incidents", "/api/v1/services",
                 "/api/v1/runs", "/api/v1/overview"):
        assert api.call("GET", path)[0] == 200, path
    # nothing changed
    assert fk.env.sql("SELECT count(*) FROM task_runs") == [(0,)]
    assert fk.env.sql("SELECT acknowledged_at FROM incidents") == [(None,)]


def test_trigger_carries_the_callers_correlation_id(fk):
    api = fk.api
    st, h, body = api.call("POST", "/api/v1/tasks/{name}/trigger", {"name": "hello"},
                           token="operate", headers={"X-Correlation-ID": "req_abc123"})
    assert st == 202, body
    assert body["correlation_id"] == "req_abc123" and h["x-correlation-id"] == "req_abc123"
    run_id = body["run_id"]
    rows = fk.env.wait_sql("SELECT status, correlation_id, trigger FROM task_runs WHERE id = ?",
                           lambda r: r and r[0][0] == "success", run_id)
    assert rows == [("success", "req_abc123", "manual")]
    events = fk.env.wait_sql("SELECT event FROM events WHERE correlation_id = 'req_abc123'",
                             lambda r: ("hello_complete",) in r)
    names = [e for (e,) in events]
    assert "hello_start" in names and "command_output" in names and "http_request" in names
    fk.d.wait_for(lambda e: e.get("event") == "hello_complete"
                  and e.get("correlation_id") == "req_abc123")
    # the run, its events, its trace
    st, _, run = api.call("GET", "/api/v1/runs/{id}", {"id": run_id})
    assert st == 200 and run["status"] == "success" and run["items"] == {"lines_output": 1}
    st, _, run = api.call("GET", "/api/v1/runs/{id}/events", {"id": run_id})
    assert st == 200 and "hello_complete" in [e["event"] for e in run["events"]]
    assert any(e.get("line") == "hello from the api test" for e in run["events"])
    st, _, tr = api.call("GET", "/api/v1/traces/{correlation_id}",
                         {"correlation_id": "req_abc123"})
    assert st == 200 and [r["id"] for r in tr["runs"]] == [run_id]
    assert api.call("GET", "/api/v1/traces/{correlation_id}",
                    {"correlation_id": "req_never"})[0] == 404
    # without a header: a correlation id of the daemon's making
    st, h, body = api.call("POST", "/api/v1/tasks/{name}/trigger", {"name": "hello"},
                           token="operate")
    assert st == 202 and body["correlation_id"].startswith("run_hello_")
    assert h["x-correlation-id"] == body["correlation_id"]
    fk.env.wait_sql("SELECT count(*) FROM task_runs WHERE status = 'success'",
                    lambda r: r[0][0] == 2)
    # runs: filters and paging
    st, _, page = api.call("GET", "/api/v1/runs", query="task=hello&status=success&limit=1")
    assert st == 200 and len(page["runs"]) == 1 and page["next_before"]
    st, _, page2 = api.call("GET", "/api/v1/runs",
                            query=f"task=hello&limit=1&before={page['next_before']}")
    assert [r["id"] for r in page2["runs"]] == [run_id] and page2["next_before"] is None
    st, _, byc = api.call("GET", "/api/v1/runs", query="correlation_id=req_abc123")
    assert [r["id"] for r in byc["runs"]] == [run_id]
    for q in ("limit=0", "limit=abc", "status=bogus", "task=bad%20name", "before=-1"):
        st, _, body = api.call("GET", "/api/v1/runs", query=q)
        assert st == 400 and body["error_type"] == "invalid_parameter", q
    # one task: last and next run, recent runs
    st, _, t = api.call("GET", "/api/v1/tasks/{name}", {"name": "hello"})
    assert st == 200 and t["last_status"] == "success" and t["next_run"]
    assert len(t["recent_runs"]) == 2
    st, _, tasks = api.call("GET", "/api/v1/tasks")
    assert st == 200 and {x["name"] for x in tasks["tasks"]} == {"hello", "slow"}
    # not found
    assert api.call("GET", "/api/v1/tasks/{name}", {"name": "nope"})[0] == 404
    assert api.call("POST", "/api/v1/tasks/{name}/trigger", {"name": "nope"},
                    token="operate")[0] == 404
    assert api.call("GET", "/api/v1/runs/{id}", {"id": 999999})[0] == 404
    assert api.call("GET", "/api/v1/runs/{id}/events", {"id": 999999})[0] == 404
    fk.no_secrets()
    fk.stop_clean()


def read_sse(api, run_id, deadline=DEADLINE):
    c = api.conn(timeout=deadline)
    c.request("GET", f"/api/v1/runs/{run_id}/events?follow=1",
              headers={"Authorization": "Bearer " + TOKENS["read"]})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    SEEN.add(("/api/v1/runs/{id}/events", "get", 200))
    events, end = [], None
    block = {}
    while True:
        line = r.fp.readline().decode()
        assert line, "the stream closed before its end event"
        line = line.rstrip("\n")
        if line == "":
            if block.get("event") == "end":
                end = json.loads(block["data"])
                break
            if "data" in block:
                events.append(json.loads(block["data"]))
            block = {}
        elif not line.startswith(":"):
            k, _, v = line.partition(": ")
            block[k] = v
    c.close()
    return events, end


def test_follow_streams_a_run_as_server_sent_events_and_overlap_is_409(fk):
    api = fk.api
    st, _, body = api.call("POST", "/api/v1/tasks/{name}/trigger", {"name": "slow"},
                           token="operate", headers={"X-Correlation-ID": "req_slow.1"})
    assert st == 202
    st, _, busy = api.call("POST", "/api/v1/tasks/{name}/trigger", {"name": "slow"},
                           token="operate")
    assert st == 409 and busy["error_type"] == "already_running"
    events, end = read_sse(api, body["run_id"])
    names = [e["event"] for e in events]
    run_names = [n for n in names if n != "http_request"]  # the trigger's, logged concurrently
    assert run_names[0] == "slow_start" and run_names[-1] == "slow_complete"
    assert names.count("http_request") == 1
    assert all(e["correlation_id"] == "req_slow.1" for e in events)
    assert end == {"status": "success"}
    # a finished run streams what it has, then ends
    events2, end2 = read_sse(api, body["run_id"])
    assert [e["event"] for e in events2] == names and end2 == {"status": "success"}
    assert api.call("GET", "/api/v1/runs/{id}/events", {"id": body["run_id"]},
                    query="follow=2")[0] == 400
    fk.stop_clean()


def test_bad_input_gets_clear_errors_and_the_daemon_keeps_running(fk):
    api = fk.api
    trig = ("/api/v1/tasks/{name}/trigger", {"name": "hello"})
    for bad in (b"{bad", b"[1, 2]", b"\"str\"", b"{\"a\": 1} trailing", b"\xff\xfe{}",
                b"{\"reason\": \"\xc3\"}", b"{}\x00{}"):
        st, _, body = api.call("POST", *trig, token="operate", body=bad)
        assert st == 400 and body["error_type"] == "invalid_json", bad
    st, _, body = api.call("POST", *trig, token="operate", body={"surprise": 1})
    assert st == 400 and body["error_type"] == "invalid_body"
    # bodies over [api] max_body_bytes (65536): by Content-Length and chunked
    for path, method, op in documented_ops():
        if "requestBody" in op:
            st, _, body = api.call(method.upper(), path, SAMPLE, token="operate",
                                   body=b"{\"x\": \"" + b"a" * 70000 + b"\"}")
            assert st == 413 and body["error_type"] == "body_too_large", path
    c = api.conn()
    c.putrequest("POST", "/api/v1/tasks/hello/trigger")
    c.putheader("Authorization", "Bearer " + TOKENS["operate"])
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for _ in range(20):
        c.send(b"1000\r\n" + b"a" * 4096 + b"\r\n")
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    assert r.status == 413 and json.loads(r.read())["error_type"] == "body_too_large"
    c.close()
    # unknown paths, methods, bad path parameters
    for path in ("/api/v1/nothing", "/api/v2/status", "/api/v1/runs/1/other", "/x",
                 "/api/v1/status/extra", "/api/v1/servers/web-1/other"):
        st, _, body = api.call("GET", path, record=False)
        assert st == 404 and body["error_type"] == "not_found", path
    st, h, body = api.call("DELETE", "/api/v1/status", record=False)
    assert st == 405 and h["allow"] == "GET" and body["error_type"] == "method_not_allowed"
    st, h, _ = api.call("GET", "/api/v1/tasks/hello/trigger", token="operate", record=False)
    assert st == 405 and h["allow"] == "POST"
    for path in ("/api/v1/runs/abc", "/api/v1/runs/0", "/api/v1/runs/1234567890123456789",
                 "/api/v1/tasks/bad%21name", "/api/v1/servers/" + "x" * 200,
                 "/api/v1/incidents/-1/ack", "/api/v1/traces/bad%20id"):
        st, _, body = api.call("GET", path, record=False)
        assert st == 400 and body["error_type"] == "invalid_parameter", path
    st, _, body = api.call("GET", "/api/v1/" + "a/" * 2000, record=False)
    assert st in (404, 414), st
    # a slow client holding a connection, and a flood of connections
    slow = socket.create_connection(("127.0.0.1", fk.port))
    slow.send(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
    flood = []
    for _ in range(300):
        try:
            flood.append(socket.create_connection(("127.0.0.1", fk.port), timeout=5))
        except OSError:
            break
    for s in flood:
        s.close()
    results = []

    def burst():
        results.append(api.call("GET", "/api/v1/status", record=False)[0])

    threads = [threading.Thread(target=burst) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert results.count(200) == 50
    slow.close()
    assert api.call("GET", "/healthz", token=None)[0] == 200
    assert fk.d.proc.poll() is None
    # the schedule goes on: a trigger still runs
    st, _, body = api.call("POST", *trig, token="operate")
    assert st == 202
    fk.env.wait_sql("SELECT status FROM task_runs WHERE id = ?",
                    lambda r: r == [("success",)], body["run_id"])
    fk.no_secrets()
    fk.stop_clean()


def test_servers_incidents_maintenance_and_services(fk):
    api = fk.api
    st, _, body = api.call("GET", "/api/v1/servers")
    (srv,) = body["servers"]
    assert srv["handle"] == "web-1" and srv["status"] == "error" and srv["health"] == "failing"
    assert srv["response_time_ms"] == 12.5 and srv["open_incident"]
    st, _, one = api.call("GET", "/api/v1/servers/{handle}", {"handle": "web-1"})
    assert st == 200 and one["services"] == []
    assert api.call("GET", "/api/v1/servers/{handle}", {"handle": "nope"})[0] == 404
    # maintenance
    m = "/api/v1/servers/{handle}/maintenance"
    st, h, body = api.call("POST", m, {"handle": "web-1"}, token="operate",
                           body={"duration": "2h", "reason": "kernel update"},
                           headers={"X-Correlation-ID": "req_maint"})
    assert st == 201 and body["correlation_id"] == "req_maint" and h["x-correlation-id"] == "req_maint"
    rows = fk.env.sql("SELECT reason, created_by, round(ends_at - starts_at) FROM maintenance_windows")
    assert rows == [("kernel update", "api:ops", 7200.0)]
    fk.env.wait_sql("SELECT event FROM events WHERE correlation_id = 'req_maint'",
                    lambda r: ("maintenance_started",) in r)
    for bad in ({}, {"duration": "10s"}, {"duration": "soon"}, {"duration": 5}):
        st, _, body = api.call("POST", m, {"handle": "web-1"}, token="operate", body=bad)
        assert st == 400 and body["error_type"] == "invalid_body", bad
    assert api.call("POST", m, {"handle": "nope"}, token="operate",
                    body={"duration": "1h"})[0] == 404
    assert api.call("GET", "/api/v1/servers/{handle}", {"handle": "web-1"})[2]["in_maintenance"]
    st, _, body = api.call("DELETE", m, {"handle": "web-1"}, token="operate")
    assert st == 200 and body["windows_ended"] == 1
    assert api.call("DELETE", m, {"handle": "nope"}, token="operate")[0] == 404
    # incidents
    st, _, body = api.call("GET", "/api/v1/incidents", query="open=1")
    (inc,) = body["incidents"]
    assert inc["server"] == "web-1" and inc["status"] == "detected"
    assert api.call("GET", "/api/v1/incidents", query="open=yes")[0] == 400
    ack, close = "/api/v1/incidents/{id}/ack", "/api/v1/incidents/{id}/close"
    st, _, body = api.call("POST", ack, {"id": inc["id"]}, token="operate",
                           body={"reason": "looking"})
    assert st == 200 and body["done"] == "acknowledged"
    assert fk.env.sql("SELECT acknowledged_by, ack_reason FROM incidents") == [("api:ops", "looking")]
    assert api.call("POST", ack, {"id": 4242}, token="operate")[0] == 404
    st, _, body = api.call("POST", close, {"id": inc["id"]}, token="operate")
    assert st == 400 and "reason" in body["error"]
    st, _, body = api.call("POST", close, {"id": inc["id"]}, token="operate",
                           body={"reason": "replaced the disk"})
    assert st == 200 and body["done"] == "closed"
    assert fk.env.sql("SELECT status, resolution FROM incidents") == [("resolved", "closed")]
    st, _, body = api.call("POST", ack, {"id": inc["id"]}, token="operate")
    assert st == 409 and body["error_type"] == "not_open"
    assert api.call("POST", close, {"id": 4242}, token="operate", body={"reason": "x"})[0] == 404
    assert api.call("POST", close, {"id": inc["id"]}, token="operate",
                    body={"reason": "again"})[0] == 409
    fk.env.wait_sql("SELECT event FROM events WHERE correlation_id = 'run_health_1_abcd'",
                    lambda r: ("incident_closed",) in r)
    # services
    sv = "/api/v1/servers/{handle}/services/{name}"
    st, _, body = api.call("PUT", sv, {"handle": "web-1", "name": "shop"}, token="operate",
                           body={"repo": "https://example.invalid/shop.git", "port": 8080,
                                 "start": "./run", "env": {"SHOP_SECRET": "hunter2-value"}})
    assert st == 200 and body["done"] == "saved"
    assert fk.env.sql("SELECT name, git_repo, port FROM services") == [
        ("shop", "https://example.invalid/shop.git", 8080)]
    for bad in ({}, {"repo": "x", "port": 70000}, {"repo": "x", "env": {"A": 1}},
                {"repo": "x", "extra": True}):
        st, _, body = api.call("PUT", sv, {"handle": "web-1", "name": "shop"}, token="operate",
                               body=bad)
        assert st == 400 and body["error_type"] == "invalid_body", bad
    assert api.call("PUT", sv, {"handle": "nope", "name": "shop"}, token="operate",
                    body={"repo": "x"})[0] == 404
    st, _, body = api.call("GET", "/api/v1/services", query="server=web-1")
    assert st == 200 and body["services"][0]["env_names"] == ["SHOP_SECRET"]
    assert "hunter2-value" not in json.dumps(body)
    assert api.call("GET", "/api/v1/services", query="server=bad%20name")[0] == 400
    st, _, body = api.call("DELETE", sv, {"handle": "web-1", "name": "shop"}, token="operate")
    assert st == 200 and body["done"] == "removed"
    assert api.call("DELETE", sv, {"handle": "web-1", "name": "shop"}, token="operate")[0] == 404
    assert fk.env.sql("SELECT count(*) FROM services") == [(0,)]
    # recover: unknown server 404; a server without services: a recover run that skips
    rec = "/api/v1/servers/{handle}/recover"
    assert api.call("POST", rec, {"handle": "nope"}, token="operate")[0] == 404
    assert api.call("POST", rec, {"handle": "web-1"}, token="operate",
                    body={"reprovision": "yes"})[0] == 400
    st, h, body = api.call("POST", rec, {"handle": "web-1"}, token="operate",
                           headers={"X-Correlation-ID": "req_rec0"})
    assert st == 202 and body["correlation_id"] == "req_rec0" and body["server"] == "web-1"
    fk.env.wait_sql("SELECT task, correlation_id, status FROM task_runs WHERE id = ?",
                    lambda r: r and r[0][2] != "running", body["run_id"])
    fk.no_secrets()
    fk.stop_clean()


def test_requests_are_counted_in_metrics(tmp_path, daemons):
    mport = free_port()
    fk = ApiEnv(tmp_path, daemons, metrics_listen=f"127.0.0.1:{mport}")
    for _ in range(3):
        assert fk.api.call("GET", "/api/v1/runs/{id}", {"id": 77})[0] == 404
    assert fk.api.call("GET", "/api/v1/status", token=None)[0] == 401
    c = http.client.HTTPConnection("127.0.0.1", mport, timeout=DEADLINE)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    assert 'fleetkeeper_api_requests_total{route="/api/v1/runs/{id}",code="404"} 3' in text
    assert 'fleetkeeper_api_requests_total{route="other",code="401"} 1' in text
    assert 'fleetkeeper_api_request_duration_seconds_count{route="/api/v1/runs/{id}"} 3' in text
    for tok in TOKENS.values():
        assert tok not in text


def test_overview_is_public_only_with_public_status(tmp_path, daemons):
    fk = ApiEnv(tmp_path, daemons, api_extra="public_status = true\n")
    st, _, body = fk.api.call("GET", "/api/v1/overview", token=None)
    assert st == 200 and body["can_operate"] is False and body["can_read"] is False
    assert [t["name"] for t in body["tasks"]] == ["hello", "slow"]
    assert body["servers"][0]["handle"] == "web-1" and len(body["incidents"]) == 1
    # everything else still needs a token
    assert fk.api.call("GET", "/api/v1/status", token=None)[0] == 401
    assert fk.api.call("GET", "/api/v1/overview", token="operate")[2]["can_operate"] is True


def test_no_token_no_listener_and_bad_token_files(tmp_path, daemons):
    env = Env(tmp_path)
    port = free_port()
    env.write_config(f"[api]\nlisten = 127.0.0.1:{port}\n" + TASKS)
    d = daemons(env)
    (e,) = d.wait_for("api_disabled")
    assert "no [api.token.NAME]" in e["reason"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    d.stop()
    short = tmp_path / "short.token"
    short.write_text("short\n")
    short.chmod(0o600)
    env.write_config(f"[api]\nlisten = 127.0.0.1:{port}\n[api.token.x]\ntoken_file = {short}\n"
                     + TASKS)
    d = daemons(env)
    (e,) = d.wait_for("api_listen_failed")
    assert "at least 16 characters" in e["error"] and "short\n" not in json.dumps(e)
    bad = env.run("check-config")
    assert bad.returncode == 0  # the file is read by the daemon, not by check-config
    d.stop()
    open_file = tmp_path / "open.token"
    open_file.write_text("a-long-enough-token-0123456789\n")
    open_file.chmod(0o644)
    env.write_config(f"[api]\nlisten = 127.0.0.1:{port}\n[api.token.x]\n"
                     f"token_file = {open_file}\n" + TASKS)
    d = daemons(env)
    (e,) = d.wait_for("api_listen_failed")
    assert "readable by others" in e["error"] and "a-long-enough" not in json.dumps(e)
    env.write_config(f"[api]\nlisten = 127.0.0.1:{port}\n[api.token.x]\nscope = root\n" + TASKS)
    r = env.run("check-config")
    assert r.returncode != 0 and "token_file is required" in r.stderr and "scope" in r.stderr
    env.write_config("[api]\nlisten = nonsense\n" + TASKS)
    r = env.run("check-config")
    assert r.returncode != 0 and "[api] listen: expected host:port" in r.stderr


def test_tls_through_libmicrohttpd(tmp_path, daemons):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    fk = ApiEnv(tmp_path, daemons, api_extra=f"tls_cert_file = {cert}\ntls_key_file = {key}\n")
    assert fk.d.named("api_listening")[0]["tls"] is True
    ctx = ssl.create_default_context(cafile=str(cert))
    tls = Api(fk.port, "https", ctx)
    st, _, body = tls.call("GET", "/api/v1/status", record=False)
    assert st == 200 and body["api"]["token"] == "viewer"
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        c = http.client.HTTPConnection("127.0.0.1", fk.port, timeout=5)
        c.request("GET", "/healthz")
        r = c.getresponse()
        assert r.status != 200
        raise ConnectionError("plain HTTP was not answered as such")


def test_unix_socket_listener(tmp_path, daemons):
    env = Env(tmp_path)
    path = tmp_path / "api.sock"
    env.write_config(f"[api]\nlisten = {path}\n" + write_tokens(tmp_path) + TASKS)
    d = daemons(env)
    assert d.wait_for("api_listening")[0]["listen"] == str(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    s.sendall(b"GET /api/v1/tasks HTTP/1.0\r\nAuthorization: Bearer " + TOKENS["read"].encode()
              + b"\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    assert data.split(b" ")[1] == b"200" and b'"hello"' in data
    d.stop()
    assert not path.exists()


needs_browser = pytest.mark.skipif(not (CHROMIUM and shutil.which("node")),
                                   reason="needs chromium and node (scripts/setup-deps.sh test)")


def npm_ci():
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not (APICHECK / "node_modules" / "playwright-core").exists():
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=APICHECK,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"npm ci failed in {APICHECK}: {r.stderr[-2000:]}"
    return node


@needs_browser
def test_status_page_in_headless_chromium(tmp_path, daemons):
    fk = ApiEnv(tmp_path, daemons)
    node = npm_ci()
    out = Path(os.environ.get("FK_ARTIFACTS", tmp_path)) / "status-page"
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"url": f"http://127.0.0.1:{fk.port}", "chromium": CHROMIUM, "read": TOKENS["read"],
           "operate": TOKENS["operate"], "out": str(out)}
    r = subprocess.run([node, str(APICHECK / "page.cjs")], input=json.dumps(cfg),
                       capture_output=True, text=True, timeout=180, cwd=APICHECK)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["steps"] == ["no_token_no_data", "read_token_shows_tasks_and_servers",
                            "updates_when_a_run_finishes", "trace_shown", "ack_works",
                            "recover_works"]
    assert res["rows_without_token"] == 0 and res["read_buttons"] == 0
    assert res["server_health"] == "failing" and res["server_response"] == "13 ms"
    assert res["phone_overflow"] <= 0, res["phone_overflow"]
    assert res["console_errors"] == [], res["console_errors"]
    for name in ("status-desktop.png", "status-phone.png", "status-operate.png"):
        assert (out / name).stat().st_size > 5000
    assert fk.env.sql("SELECT acknowledged_by FROM incidents") == [("api:ops",)]
    fk.env.wait_sql("SELECT task FROM task_runs WHERE task = 'recover'", lambda r: len(r) == 1)
    fk.no_secrets()
    fk.stop_clean()


# ---- the Ansible run of a recovery carries the caller's id ----

from fk_ansible import AnsibleHost, needs_ansible  # noqa: E402


@needs_ansible
def test_recover_through_the_api_carries_the_correlation_id_into_ansible(tmp_path, daemons):
    h = AnsibleHost(tmp_path)
    try:
        h.add_server("vps-7")
        port = free_port()
        r = h.env.run("services", "add", "vps-7", "alpha", "--repo", h.make_repo("alpha", port),
                      "--port", str(port), "--start",
                      f"python3 -m http.server {port} --bind 127.0.0.1")
        assert r.returncode == 0, r.stderr
        h.open_incident("vps-7")
        fk = ApiEnv(tmp_path, daemons, env=h.env)
        rec = "/api/v1/servers/{handle}/recover"
        st, hd, body = fk.api.call("POST", rec, {"handle": "vps-7"}, token="operate",
                                   headers={"X-Correlation-ID": "req_abc123"})
        assert st == 202 and body["correlation_id"] == "req_abc123"
        assert hd["x-correlation-id"] == "req_abc123"
        st, _, busy = fk.api.call("POST", rec, {"handle": "vps-7"}, token="operate")
        assert st == 409 and busy["error_type"] == "already_recovering"
        fk.d.wait_for("recover_complete", deadline=DEADLINE * 4)
        assert h.env.sql("SELECT task, status, correlation_id FROM task_runs") == [
            ("recover", "success", "req_abc123")]
        starts = fk.d.named("ansible_playbook_start")
        assert starts and all(e["correlation_id"] == "req_abc123" for e in starts)
        names = [e for (e,) in h.env.wait_sql(
            "SELECT event FROM events WHERE correlation_id = 'req_abc123'",
            lambda r: ("recover_complete",) in r)]
        assert "ansible_playbook_complete" in names and "incident_recovery_complete" in names
        arts = list((h.env.state / "artifacts").iterdir())
        assert arts and all("FLEETKEEPER_CORRELATION_ID=req_abc123" in (a / "command").read_text()
                            for a in arts)
        assert h.env.sql("SELECT status FROM incidents") == [("resolved",)]
    finally:
        h.close()


def test_short_load_keeps_the_schedule_and_memory_bounded():
    """bench/api_load.py for 8 s with 60 clients (the README's figures come
    from 30 s with 200): no errors, the 2 s task fires on time, RSS stays
    small, SSE streams receive events, the daemon exits 0."""
    r = subprocess.run(["/usr/bin/python3", str(ROOT / "bench" / "api_load.py"),
                        BIN,
                        "8", "60"], capture_output=True, text=True, timeout=DEADLINE * 4)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["errors"] == 0 and res["requests"] > 500, res
    assert res["tick_fires"] >= res["tick_expected"] - 1, res
    assert res["sse_streams_opened"] >= 3 and res["sse_events"] >= 3, res
    if not _is_sanitized(BIN):  # ASan's quarantine and shadow make RSS meaningless
        assert 0 < res["rss_peak_kb"] < 256 * 1024, res
    assert res["daemon_exit"] == 0, res


# ---- the OpenAPI document ----

def test_openapi_document_is_valid():
    npm_ci()
    redocly = APICHECK / "node_modules" / ".bin" / "redocly"
    r = subprocess.run([str(redocly), "lint", "--config", str(APICHECK / "redocly.yaml"),
                        str(OPENAPI)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "REDOCLY_TELEMETRY": "off",
                            "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "valid" in r.stdout + r.stderr
    broken = OPENAPI.read_text().replace("openapi: 3.0.3", "openapi: 3.0.3\nbogus_key: 1", 1)
    bad = Path(os.environ.get("TMPDIR", "/tmp")) / f"fk-openapi-broken-{os.getpid()}.yaml"
    bad.write_text(broken)
    try:
        r = subprocess.run([str(redocly), "lint", "--config", str(APICHECK / "redocly.yaml"),
                            str(bad)], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "REDOCLY_TELEMETRY": "off"})
        assert r.returncode != 0
    finally:
        bad.unlink()


def test_openapi_matches_what_the_daemon_answered():
    """Runs last: every documented (path, method, status) was seen, and
    everything seen is documented. Only meaningful after the tests above
    ran in this session (skipped when run alone)."""
    if len(SEEN) < 50:
        pytest.skip("run with the whole file: the other tests collect the answers")
    documented = set()
    for path, method, op in documented_ops():
        for code in op["responses"]:
            if code != "default":
                documented.add((path, method, int(code)))
    missing = documented - SEEN
    undocumented = SEEN - documented
    assert not missing, sorted(missing)
    assert not undocumented, sorted(undocumented)
