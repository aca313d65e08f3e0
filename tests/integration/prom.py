"""Helpers for the metrics tests: free loopback ports, HTTP GETs, a real
Prometheus (Debian's package) on loopback with the shipped configuration
adapted to the test's target, and the dashboard/rules queries.
"""
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from conftest import DEADLINE, ROOT

ETC = ROOT / "etc"
DASHBOARD = ETC / "grafana" / "dashboards" / "fleetkeeper.json"
DATASOURCES = ETC / "grafana" / "provisioning" / "datasources" / "fleetkeeper.yml"
PROM_CONFIG = ETC / "prometheus" / "prometheus.yml"
PROM_RULES = ETC / "prometheus" / "rules" / "fleetkeeper.yml"

# What Grafana would put in for its variables when the test evaluates a query.
GRAFANA_VARS = {
    "$__rate_interval": "30s",
    "$__interval": "15s",
    "$__range": "5m",
    "$task": ".*",
    "$service": ".+",
    "$correlation_id": "run_hello_1795869601_3f2a",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=DEADLINE):
    """(status, body) — HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def substitute(expr):
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


def dashboard():
    return json.loads(DASHBOARD.read_text())


def all_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def dashboard_queries(kind):
    """(panel title, expr) of every target whose data source is of `kind`."""
    out = []
    for p in all_panels(dashboard()):
        for t in p.get("targets", []):
            ds = t.get("datasource") or p.get("datasource") or {}
            if ds.get("type") == kind:
                out.append((p["title"], t["expr"]))
    return out


def rule_exprs():
    rules = yaml.safe_load(PROM_RULES.read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


class Prometheus:
    """prometheus on 127.0.0.1:<free port>, its own storage, 1 s intervals,
    the shipped scrape config with the target replaced by `target`."""

    def __init__(self, tmp: Path, target: str):
        self.dir = tmp / "prometheus"
        self.dir.mkdir()
        shutil.copy(PROM_RULES, self.dir / "rules.yml")
        cfg = yaml.safe_load(PROM_CONFIG.read_text())
        cfg["global"]["scrape_interval"] = "1s"
        cfg["global"]["evaluation_interval"] = "1s"
        cfg["rule_files"] = [str(self.dir / "rules.yml")]
        job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "fleetkeeper")
        job["static_configs"][0]["targets"] = [target]
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.config}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, deadline=DEADLINE):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                if http_get(self.url + "/-/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready: {(self.dir / 'prometheus.log').read_text()[-2000:]}")

    def query(self, expr):
        """The parsed /api/v1/query answer (errors included)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return json.loads(http_get(url)[1])

    def wait_data(self, expr, deadline=DEADLINE):
        """Poll until expr succeeds with a non-empty result; returns it."""
        end = time.monotonic() + deadline
        ans = None
        while time.monotonic() < end:
            ans = self.query(expr)
            if ans.get("status") == "success" and ans["data"]["result"]:
                return ans["data"]["result"]
            if ans.get("status") != "success":
                break
            time.sleep(0.2)
        raise AssertionError(f"no data for {expr!r}: {ans}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def parse_logql(queries):
    """Parse LogQL with @grafana/lezer-logql (tests/integration/logql)."""
    d = Path(__file__).resolve().parent / "logql"
    npm = shutil.which("npm")
    node = shutil.which("node")
    assert npm and node, "node and npm are needed for the LogQL check (apt-get install nodejs npm)"
    if not (d / "node_modules" / "@grafana" / "lezer-logql").exists():
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=d, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, f"npm ci failed in {d}: {r.stderr[-2000:]}"
    r = subprocess.run([node, str(d / "parse.cjs")], cwd=d, input=json.dumps(queries),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)
