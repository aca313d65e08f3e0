"""A git smart-HTTP server on loopback for the mirror tests: `git
http-backend` (the CGI program git ships) behind a small ThreadingHTTPServer
that wants HTTP Basic auth, as GitHub does for a private repository.

Every request without credentials, or whose user and password
`check(user, password)` refuses, gets 401 with `WWW-Authenticate: Basic`
(what makes libgit2 ask its credential callback); the others are handed to
http-backend with GIT_PROJECT_ROOT = root, the request body de-chunked.
Every request is recorded in `requests` (method, path, user, whether its
password was accepted, status) -- never the password itself.
"""
import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class GitHTTP:
    def __init__(self, root, check):
        self.root = str(root)
        self.check = check
        self.lock = threading.Lock()
        self.requests = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, name):
        return "http://127.0.0.1:%d/%s.git" % (self.httpd.server_address[1], name)

    def served(self):
        """The requests answered by http-backend (authenticated)."""
        with self.lock:
            return [r for r in self.requests if r["accepted"]]

    # ---- the server ----

    @staticmethod
    def _credentials(h):
        auth = h.headers.get("Authorization") or ""
        if not auth.startswith("Basic "):
            return None, None
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None, None
        return user, password

    @staticmethod
    def _body(h):
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += h.rfile.read(size)
                h.rfile.readline()
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    def _backend(self, h, user, body):
        u = urlsplit(h.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": h.command,
            "PATH_INFO": u.path,
            "QUERY_STRING": u.query,
            "CONTENT_TYPE": h.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
        }
        for name, var in (("Git-Protocol", "GIT_PROTOCOL"),
                          ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
            if h.headers.get(name):
                env[var] = h.headers[name]
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True, check=False).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        return status, headers, payload

    def _handle(self, h):
        user, password = self._credentials(h)
        accepted = user is not None and self.check(user, password)
        body = self._body(h)
        if accepted:
            status, headers, payload = self._backend(h, user, body)
        else:
            status, payload = 401, b"authentication required\n"
            headers = [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Type", "text/plain")]
        with self.lock:
            self.requests.append({"method": h.command, "path": h.path, "user": user,
                                  "accepted": accepted, "status": status})
        h.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding"):
                h.send_header(name, value)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                server._handle(self)

            def do_POST(self):
                server._handle(self)

        return Handler
