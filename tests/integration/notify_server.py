"""A recording HTTP receiver on 127.0.0.1 for the notification tests (issue 9).

It speaks three dialects on one port:
  POST /bot<TOKEN>/sendMessage   the Telegram Bot API: {"ok": true, "result": {...}}
                                 or {"ok": false, "error_code": 429, "parameters":
                                 {"retry_after": N}, "description": ...}
  POST /slack/<anything>         a Slack-style incoming webhook: "ok"
  POST /hook                     a generic webhook: {"ok": true}

Every request is recorded (time, path, headers, parsed JSON body). Tests can
make the next requests fail with a status, answer 429 with retry_after, hold
a request until released (to kill the daemon mid-delivery), or take the
whole server down (connection refused) and up again on the same port.
"""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Request:
    def __init__(self, path, headers, raw):
        self.time = time.monotonic()
        self.path = path
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw)
        except ValueError:
            self.json = None

    @property
    def text(self):
        return (self.json or {}).get("text", "")

    @property
    def kind(self):
        if self.path.startswith("/bot"):
            return "telegram"
        if self.path.startswith("/slack"):
            return "slack"
        return "webhook"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class NotifyServer:
    def __init__(self, token="123456:SECRET-TOKEN-abcdef"):
        self.token = token
        self.requests = []
        self.cond = threading.Condition()
        self.script = []  # list of ("status", code) / ("429", retry_after) / ("hold",)
        self.holding = []  # Events of held requests
        self.port = None
        self.httpd = None
        self.thread = None
        self.up()

    # --- control ---

    def up(self):
        handler = self._handler()
        self.httpd = _Server(("127.0.0.1", self.port or 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def down(self):
        """Connection refused from now on (same port comes back with up())."""
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def close(self):
        self.release()
        self.down()

    def fail_next(self, n=1, status=500):
        with self.cond:
            self.script += [("status", status)] * n

    def rate_limit_next(self, retry_after=2, n=1):
        with self.cond:
            self.script += [("429", retry_after)] * n

    def hold_next(self):
        with self.cond:
            self.script.append(("hold",))

    def release(self):
        with self.cond:
            for ev in self.holding:
                ev.set()
            self.holding = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # --- waiting ---

    def wait_requests(self, n, pred=lambda r: True, deadline=30.0):
        end = time.monotonic() + deadline
        with self.cond:
            while True:
                got = [r for r in self.requests if pred(r)]
                if len(got) >= n:
                    return got
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"only {len(got)} of {n} requests within {deadline}s: "
                        f"{[(r.path, r.raw[:80]) for r in self.requests]}")
                self.cond.wait(min(left, 0.5))

    def wait_held(self, deadline=30.0):
        end = time.monotonic() + deadline
        with self.cond:
            while not self.holding:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("no request was held")
                self.cond.wait(min(left, 0.5))

    def ok_requests(self, pred=lambda r: True):
        with self.cond:
            return [r for r in self.requests if r.outcome == "ok" and pred(r)]

    # --- serving ---

    def _next_action(self):
        with self.cond:
            return self.script.pop(0) if self.script else None

    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n).decode("utf-8", "replace")
                req = Request(self.path, dict(self.headers), raw)
                action = srv._next_action()
                req.outcome = "ok" if action is None else action[0]
                with srv.cond:
                    srv.requests.append(req)
                    srv.cond.notify_all()
                if action and action[0] == "hold":
                    ev = threading.Event()
                    with srv.cond:
                        srv.holding.append(ev)
                        srv.cond.notify_all()
                    ev.wait(120)
                    return self._reply(503, {"ok": False, "error_code": 503,
                                             "description": "held"})
                self._answer(req, action)

            def _answer(self, req, action):
                kind = req.kind
                if kind == "telegram" and not self.path.startswith(f"/bot{srv.token}/"):
                    # Echo the path like a careless proxy would: the sender must redact it.
                    return self._reply(401, {"ok": False, "error_code": 401,
                                             "description": f"Unauthorized {self.path}"})
                if action and action[0] == "429":
                    body = {"ok": False, "error_code": 429,
                            "description": "Too Many Requests: retry after %d" % action[1],
                            "parameters": {"retry_after": action[1]}}
                    return self._reply(429, body, {"Retry-After": str(action[1])})
                if action and action[0] == "status":
                    return self._reply(action[1], {"ok": False, "error_code": action[1],
                                                   "description": "scripted failure"})
                if kind == "telegram":
                    chat = (req.json or {}).get("chat_id")
                    return self._reply(200, {"ok": True, "result": {
                        "message_id": len(srv.requests), "chat": {"id": chat},
                        "text": req.text}})
                if kind == "slack":
                    return self._reply(200, "ok")
                return self._reply(200, {"ok": True})

            def _reply(self, status, body, headers=None):
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                try:
                    self.send_response(status)
                    ctype = "text/plain" if isinstance(body, str) else "application/json"
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        return Handler


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
