"""A replay HTTP server for the sync tests: GitHub and Time4VPS on loopback.

GitHub responses are built from the recorded exchanges of
tests/fixtures/github (FK_GITHUB_FIXTURES overrides): each repository
of the organization is the recorded repository object with its id, name and
URLs changed, and the response headers are the recorded ones (rate-limit
headers, content type, cache control) plus a Link header with rel="next" /
rel="last" and an ETag per page (a matching If-None-Match gets a 304).

Scripted faults, consumed in order per path prefix (`fault(path, kind,
times)`): "502" (a bad gateway), "ratelimit:N" (403 with
X-RateLimit-Remaining: 0 and a reset N seconds ahead), "secondary:403" and
"secondary:429" (GitHub's secondary rate limit: no Retry-After, the usual
non-zero X-RateLimit-Remaining, a body that says "secondary rate limit"),
"truncate" (a complete response whose JSON body is cut in half). A renamed
organization (`rename_org(old)`) answers 301 with the new location.

Single repositories: GET /repos/<org>/<name> answers the repository; a
renamed one (`rename_repo(old, id)`) answers with the recorded exchange of
rename-repository.json: 301 with Location /repositories/<id> (rewritten to
this server), then GET /repositories/<id> the recorded 200 with the
repository's current fields.

A GitHub App (`enable_app(app_id, public_key_pem, ...)`): every request
made with a JWT (GET /app/installations, POST
/app/installations/<id>/access_tokens) has it checked as GitHub does: three
base64url parts without padding, the header {"alg": "RS256", "typ":
"JWT"}, an RS256 signature that verifies with the app's public key (the
Debian package python3-cryptography), `iss` the app's id, `iat` not in the
future and `exp` after now but at most 10 minutes ahead; a JWT that fails
gets GitHub's 401 and every JWT is recorded in `jwts` (claims, verdict,
time received). The exchange answers 201 with a new installation token and
its `expires_at` (`token_ttls`: the lifetimes of the next tokens, then
`token_ttl`); GET /installation/repositories wants a live issued token
(Bearer) and pages like the organization's listing, as GitHub's object
{"total_count", "repositories": [...]}. A "401" fault answers "Bad
credentials" and revokes the token it was sent with. The shapes of these
responses follow GitHub's REST documentation (the recordings have no App
exchange). A fault prefix with a "?" matches the path with its query (one
page of a listing).

Time4VPS: GET /t4v/server (list) and /t4v/server/<id> (details), with basic
auth recorded; `details_delay` seconds before each details response, and
`t4v_max_in_flight` the most details requests seen at once. Every request is
recorded (method, path, headers) so tests can assert e.g. the Authorization
header.
"""
import base64
import copy
import hashlib
import json
import os
import re
import secrets
import threading
import time
from datetime import datetime, timezone
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
        self.renamed_repos = {}  # old name -> repository id
        rename = _load("rename-repository.json")
        self.rename_301 = next(e for e in rename if e["method"] == "get" and e["status"] == 301)
        self.rename_200 = next(e for e in rename if e["method"] == "get" and e["status"] == 200)
        self.rate_remaining = 4999
        self.servers = []   # time4vps list items
        self.details = {}   # id -> details dict
        self.details_delay = 0.0
        self.t4v_in_flight = 0
        self.t4v_max_in_flight = 0
        self._pages = {}
        self.app = None      # enable_app
        self.tokens = {}     # installation token -> expires_at (unix seconds)
        self.revoked = set()
        self.token_ttl = 3600
        self.token_ttls = []  # lifetimes of the next tokens issued, then token_ttl
        self.jwts = []       # every JWT presented: claims, ok, why, at
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # ---- setup ----

    def make_repo(self, rid, name, archived=False, clone_url=None, template=None):
        r = copy.deepcopy(template or self.template)
        full = "%s/%s" % (self.org, name)
        r.update(id=rid, node_id="R_%d" % rid, name=name, full_name=full,
                 html_url="https://github.com/" + full,
                 url="https://api.github.com/repos/" + full,
                 clone_url=clone_url or "https://github.com/%s.git" % full,
                 archived=archived, default_branch="main")
        r["owner"]["login"] = self.org
        if "organization" in r:
            r["organization"]["login"] = self.org
        return r

    def changed(self):
        with self.lock:
            self._pages.clear()

    def fault(self, prefix, kind, times=1):
        with self.lock:
            self.faults.append([prefix, kind, times])

    def rename_org(self, old):
        self.renamed[old] = self.org

    def rename_repo(self, old, rid):
        """GET /repos/<org>/<old> now redirects to /repositories/<rid>."""
        self.renamed_repos[old] = rid

    def enable_app(self, app_id, public_key_pem, installation_id=4242, account=None):
        """Serve a GitHub App whose JWTs verify with public_key_pem, installed
        (after another account's installation) for account (default: org)."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        self.app = {"id": str(app_id), "key": load_pem_public_key(public_key_pem),
                    "installation_id": installation_id, "account": account or self.org}

    def issued(self):
        """The installation tokens issued so far, in order."""
        with self.lock:
            return list(self.tokens)

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

    def _take_fault(self, path, full):
        with self.lock:
            for f in self.faults:
                if (full if "?" in f[0] else path).startswith(f[0]) and f[2] != 0:
                    f[2] -= 1
                    return f[1]
        return None

    def _page(self, per_page, page, installation=False):
        key = (per_page, page) if not installation else ("installation", per_page, page)
        with self.lock:
            if key not in self._pages:
                items = self.repos[(page - 1) * per_page: page * per_page]
                body = json.dumps(items if not installation else {
                    "total_count": len(self.repos), "repository_selection": "all",
                    "repositories": items}).encode()
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

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with replay.lock:
                    replay.requests.append({"method": "POST", "path": self.path, "body": body,
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
        fault = self._take_fault(u.path, h.path)
        if fault == "401":
            self.revoked.add(self._bearer(h))
            return self._send(h, 401, json.dumps(self.BAD_CREDENTIALS).encode())
        if fault == "502":
            return self._send(h, 502, b'{"message": "Bad Gateway"}')
        if fault and fault.startswith("secondary:"):
            return self._send(h, int(fault.split(":")[1]), json.dumps({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes"
                           " before you try again. If you reach out to GitHub Support for help,"
                           " please include the request ID 0000:00000:0000000:0000000:00000000.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-"
                                     "the-rest-api#about-secondary-rate-limits"}).encode())
        if fault and fault.startswith("ratelimit:"):
            secs = int(fault.split(":")[1])
            return self._send(h, 403, json.dumps({
                "message": "API rate limit exceeded",
                "documentation_url": "https://docs.github.com/rest/rate-limit"}).encode(),
                {"X-RateLimit-Remaining": "0",
                 "X-RateLimit-Reset": str(int(time.time()) + secs)})
        if parts[0] == "app" or parts == ["installation", "repositories"]:
            return self._app(h, u, parts, fault)
        if h.command != "GET":
            return self._send(h, 404, json.dumps(self.not_found).encode())
        if len(parts) == 3 and parts[0] in ("orgs", "users") and parts[2] == "repos":
            return self._repos(h, u, parts, fault)
        if len(parts) == 3 and parts[0] == "repos":
            return self._repo(h, parts[1], parts[2])
        if len(parts) == 2 and parts[0] == "repositories":
            return self._repository(h, parts[1])
        if parts[0] == "t4v":
            return self._t4v(h, parts)
        return self._send(h, 404, json.dumps(self.not_found).encode())

    # ---- the GitHub App ----

    BAD_CREDENTIALS = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
    JWT_UNDECODABLE = {"message": "A JSON web token could not be decoded",
                       "documentation_url": "https://docs.github.com/rest"}

    @staticmethod
    def _bearer(h):
        auth = h.headers.get("Authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None

    @staticmethod
    def _b64url(part):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", part):
            raise ValueError("not base64url without padding")
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    def _check_jwt(self, jwt):
        """(claims or None, why it is refused or None), as GitHub checks."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        now = time.time()
        try:
            head, claims_b64, sig_b64 = (jwt or "").split(".")
            header = json.loads(self._b64url(head))
            claims = json.loads(self._b64url(claims_b64))
            sig = self._b64url(sig_b64)
        except ValueError as e:
            return None, "not a JWT: %s" % e
        if header != {"alg": "RS256", "typ": "JWT"}:
            return claims, "header %r" % header
        try:
            self.app["key"].verify(sig, ("%s.%s" % (head, claims_b64)).encode(),
                                   padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return claims, "signature does not verify with the app's public key"
        iat, exp = claims.get("iat"), claims.get("exp")
        if str(claims.get("iss")) != self.app["id"]:
            return claims, "iss %r" % claims.get("iss")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return claims, "iat/exp not integers"
        if iat > now + 1:
            return claims, "iat in the future"
        if exp <= now or exp > now + 600:
            return claims, "exp not within 10 minutes ahead"
        return claims, None

    def _jwt_ok(self, h):
        claims, why = self._check_jwt(self._bearer(h))
        with self.lock:
            self.jwts.append({"claims": claims, "ok": why is None, "why": why,
                              "at": time.time(), "path": h.path})
        if why is not None:
            self._send(h, 401, json.dumps(self.JWT_UNDECODABLE).encode())
        return why is None

    def _token_live(self, token):
        with self.lock:
            exp = self.tokens.get(token)
            return exp is not None and token not in self.revoked and exp > time.time()

    def _app(self, h, u, parts, fault):
        if self.app is None:
            return self._send(h, 404, json.dumps(self.not_found).encode())
        inst = self.app["installation_id"]
        if parts == ["installation", "repositories"] and h.command == "GET":
            if not self._token_live(self._bearer(h)):
                return self._send(h, 401, json.dumps(self.BAD_CREDENTIALS).encode())
            return self._listing(h, u, fault=fault, installation=True)
        if parts == ["app", "installations"] and h.command == "GET":
            if not self._jwt_ok(h):
                return None
            acc = lambda login, i: {"login": login, "id": i, "type": "Organization"}  # noqa: E731
            return self._send(h, 200, json.dumps([
                {"id": inst + 1, "account": acc("someone-else", 2), "app_id": 1,
                 "target_type": "Organization", "repository_selection": "selected"},
                {"id": inst, "account": acc(self.app["account"], 1), "app_id": 1,
                 "target_type": "Organization", "repository_selection": "all",
                 "permissions": {"metadata": "read", "contents": "read"}}]).encode())
        if (len(parts) == 4 and parts[:2] == ["app", "installations"]
                and parts[3] == "access_tokens" and h.command == "POST"):
            if not self._jwt_ok(h):
                return None
            if parts[2] != str(inst):
                return self._send(h, 404, json.dumps(self.not_found).encode())
            token = "ghs_" + secrets.token_hex(18)
            with self.lock:
                ttl = self.token_ttls.pop(0) if self.token_ttls else self.token_ttl
                exp = int(time.time()) + ttl
                self.tokens[token] = exp
            when = datetime.fromtimestamp(exp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return self._send(h, 201, json.dumps({
                "token": token, "expires_at": when,
                "permissions": {"metadata": "read", "contents": "read"},
                "repository_selection": "all"}).encode())
        return self._send(h, 404, json.dumps(self.not_found).encode())

    def _repos(self, h, u, parts, fault):
        if parts[1] in self.renamed:
            loc = "%s/%s/%s/repos?%s" % (self.url, parts[0], self.renamed[parts[1]], u.query)
            return self._send(h, 301, json.dumps({"message": "Moved Permanently", "url": loc}).encode(),
                              {"Location": loc})
        if parts[1] != self.org:
            return self._send(h, 404, json.dumps(self.not_found).encode())
        return self._listing(h, u, fault=fault)

    def _listing(self, h, u, fault=None, installation=False):
        q = parse_qs(u.query)
        per_page = max(1, min(100, int(q.get("per_page", ["30"])[0])))
        page = max(1, int(q.get("page", ["1"])[0]))
        body, etag = self._page(per_page, page, installation)
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

    @staticmethod
    def _recorded_headers(exchange):
        return {k: str(v) for k, v in exchange["headers"].items() if k.lower() not in SKIP_HEADERS}

    def _repo(self, h, owner, name):
        if owner == self.org and name in self.renamed_repos:
            e = self.rename_301
            loc = "%s/repositories/%d" % (self.url, self.renamed_repos[name])
            body = dict(e["response"], url=loc)
            return self._send(h, e["status"], json.dumps(body).encode(),
                              dict(self._recorded_headers(e), Location=loc))
        repo = next((r for r in self.repos if r["name"] == name), None) \
            if owner == self.org else None
        if repo is None:
            return self._send(h, 404, json.dumps(self.not_found).encode())
        return self._send(h, 200, json.dumps(repo).encode())

    def _repository(self, h, rid):
        repo = next((r for r in self.repos if str(r["id"]) == rid), None)
        if repo is None:
            return self._send(h, 404, json.dumps(self.not_found).encode())
        e = self.rename_200
        body = self.make_repo(repo["id"], repo["name"], repo["archived"], repo["clone_url"],
                              template=e["response"])
        return self._send(h, e["status"], json.dumps(body).encode(), self._recorded_headers(e))

    def _t4v(self, h, parts):
        if len(parts) == 2 and parts[1] == "server":
            return self._send(h, 200, json.dumps(self.servers).encode())
        if len(parts) == 3 and parts[1] == "server" and parts[2] in self.details:
            with self.lock:
                self.t4v_in_flight += 1
                self.t4v_max_in_flight = max(self.t4v_max_in_flight, self.t4v_in_flight)
            try:
                time.sleep(self.details_delay)  # a slow provider API, not synchronisation
                return self._send(h, 200, json.dumps(self.details[parts[2]]).encode())
            finally:
                with self.lock:
                    self.t4v_in_flight -= 1
        return self._send(h, 404, b'{"error": "not found"}')
