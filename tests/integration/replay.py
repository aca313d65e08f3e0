"""A replay HTTP server for the sync tests: GitHub and Time4VPS on loopback.

GitHub responses are built from the recorded exchanges of
tests/fixtures/github (FK_GITHUB_FIXTURES overrides): each repository
of the organization is the recorded repository object with its id, name and
URLs changed, and the response headers are the recorded ones (rate-limit
headers, content type, cache control) plus a Link header with rel="next" /
rel="last" and an ETag per page (a matching If-None-Match gets a 304).

Scripted faults, consumed in order per path prefix (`fault(path, kind,
times)`): "502" (a bad gateway), "ratelimit:N" (403 with
X-RateLimit-Remaining: 0 and a reset N seconds ahead), "truncate" (a
complete response whose JSON body is cut in half). A renamed organization
(`rename_org(old)`) answers 301 with the new location, as GitHub does for
renamed repositories and organizations.

Time4VPS: GET /t4v/server (list) and /t4v/server/<id> (details), with basic
auth recorded. Every request is recorded (method, path, headers) so tests
can assert e.g. the Authorization header.
"""
import copy
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# A copy of the recorded responses (octokit fixtures, MIT, see its LICENSE.md)
# lives in tests/fixtures/github so that the tests need nothing outside the
# repository.
FIXTURES = Path(os.environ.get("FK_GITHUB_FIXTURES",
                               Path(__file__).resolve().parents[1] / "fixtures" / "github"))

SKIP_HEADERS = {"content-length", "link", "etag", "connection", "date", "status",
                "transfer-encoding", "content-encoding", "location", "vary"}


def _load(name):
    return json.loads((FIXTURES / name).read_text())


class Replay:
    def __init__(self, org="acme", repos=300):
        repo_fx = _load("get-repository.json")[0]
        self.template = repo_fx["response"]
        pag = _load("paginate-issues.json")[0]
        self.base_headers = {k: str(v) for k, v in pag["headers"].items()
                             if k.lower() not in SKIP_HEADERS}
        self.not_found = next(e for e in _load("errors.json") if e["status"] == 404)["response"] \
            if any(e["status"] == 404 for e in _load("errors.json")) else {"message": "Not Found"}
        self.org = org
        self.lock = threading.Lock()
        self.repos = [self.make_repo(1000 + i, "repo-%04d" % i) for i in range(repos)]
        self.requests = []
        self.faults = []  # [prefix, kind, remaining]
        self.renamed = {}
        self.rate_remaining = 4999
        self.servers = []   # time4vps list items
        self.details = {}   # id -> details dict
        self._pages = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # ---- setup ----

    def make_repo(self, rid, name, archived=False, clone_url=None):
        r = copy.deepcopy(self.template)
        full = "%s/%s" % (self.org, name)
        r.update(id=rid, node_id="R_%d" % rid, name=name, full_name=full,
                 html_url="https://github.com/" + full,
                 url="https://api.github.com/repos/" + full,
                 clone_url=clone_url or "https://github.com/%s.git" % full,
                 archived=archived, default_branch="main")
        r["owner"]["login"] = self.org
        return r

    def changed(self):
        with self.lock:
            self._pages.clear()

    def fault(self, prefix, kind, times=1):
        with self.lock:
            self.faults.append([prefix, kind, times])

    def rename_org(self, old):
        self.renamed[old] = self.org

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def requests_to(self, prefix):
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    # ---- responses ----

    def _take_fault(self, path):
        with self.lock:
            for f in self.faults:
                if path.startswith(f[0]) and f[2] != 0:
                    f[2] -= 1
                    return f[1]
        return None

    def _page(self, per_page, page):
        key = (per_page, page)
        with self.lock:
            if key not in self._pages:
                items = self.repos[(page - 1) * per_page: page * per_page]
                body = json.dumps(items).encode()
                etag = '"%s"' % hashlib.sha1(body).hexdigest()
                self._pages[key] = (body, etag)
            return self._pages[key]

    def _handler(self):
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with replay.lock:
                    replay.requests.append({"method": "GET", "path": self.path,
                                            "headers": dict(self.headers.items())})
                try:
                    replay._route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def _send(self, h, status, body=b"", headers=None):
        h.send_response(status)
        hdrs = dict(self.base_headers)
        hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
        for k, v in hdrs.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body and h.command != "HEAD":
            h.wfile.write(body)

    def _route(self, h):
        u = urlsplit(h.path)
        parts = u.path.strip("/").split("/")
        fault = self._take_fault(u.path)
        if fault == "502":
            return self._send(h, 502, b'{"message": "Bad Gateway"}')
        if fault and fault.startswith("ratelimit:"):
            secs = int(fault.split(":")[1])
            import time
            return self._send(h, 403, json.dumps({
                "message": "API rate limit exceeded",
                "documentation_url": "https://docs.github.com/rest/rate-limit"}).encode(),
                {"X-RateLimit-Remaining": "0",
                 "X-RateLimit-Reset": str(int(time.time()) + secs)})
        if len(parts) == 3 and parts[0] in ("orgs", "users") and parts[2] == "repos":
            return self._repos(h, u, parts, fault)
        if parts[0] == "t4v":
            return self._t4v(h, parts)
        return self._send(h, 404, json.dumps(self.not_found).encode())

    def _repos(self, h, u, parts, fault):
        if parts[1] in self.renamed:
            loc = "%s/%s/%s/repos?%s" % (self.url, parts[0], self.renamed[parts[1]], u.query)
            return self._send(h, 301, json.dumps({"message": "Moved Permanently", "url": loc}).encode(),
                              {"Location": loc})
        if parts[1] != self.org:
            return self._send(h, 404, json.dumps(self.not_found).encode())
        q = parse_qs(u.query)
        per_page = max(1, min(100, int(q.get("per_page", ["30"])[0])))
        page = max(1, int(q.get("page", ["1"])[0]))
        body, etag = self._page(per_page, page)
        last = max(1, (len(self.repos) + per_page - 1) // per_page)
        base = "%s%s?per_page=%d&page=" % (self.url, u.path, per_page)
        links = []
        if page < last:
            links.append('<%s%d>; rel="next"' % (base, page + 1))
            links.append('<%s%d>; rel="last"' % (base, last))
        if page > 1:
            links.append('<%s%d>; rel="first"' % (base, 1))
            links.append('<%s%d>; rel="prev"' % (base, page - 1))
        hdrs = {"ETag": etag, "X-RateLimit-Remaining": str(self.rate_remaining)}
        if links:
            hdrs["Link"] = ", ".join(links)
        if fault == "truncate":
            return self._send(h, 200, body[: len(body) // 2], hdrs)
        if h.headers.get("If-None-Match") == etag:
            return self._send(h, 304, b"", hdrs)
        return self._send(h, 200, body, hdrs)

    def _t4v(self, h, parts):
        if len(parts) == 2 and parts[1] == "server":
            return self._send(h, 200, json.dumps(self.servers).encode())
        if len(parts) == 3 and parts[1] == "server" and parts[2] in self.details:
            return self._send(h, 200, json.dumps(self.details[parts[2]]).encode())
        return self._send(h, 404, b'{"error": "not found"}')
