"""The Prometheus endpoint, the shipped Prometheus/Grafana/promtail files,
checked against the real daemon and the real Prometheus (Debian's package).
"""
import re
import signal
import socket
import sqlite3
import subprocess

import pytest

from conftest import DEADLINE, ON_PG, wait_until
from prom import (DATASOURCES, ETC, PROM_CONFIG, PROM_RULES, Prometheus, all_panels, dashboard,
                  dashboard_queries, free_port, http_get, parse_logql, rule_exprs, substitute)

import yaml


def metrics_config(env, listen, marker):
    # fast succeeds every second; flaky succeeds once, then (marker created)
    # fails every second: failures, and no success within twice its interval.
    return env.write_config(f"""
[metrics]
listen = {listen}

[task.fast]
type = command
schedule = @every 1s
run_on_start = true
command = echo hi

[task.flaky]
type = command
schedule = @every 1s
run_on_start = true
command = test ! -e {marker}
""", metrics_listen=None)


@pytest.fixture
def daemon(env, daemons):
    port = free_port()
    marker = env.dir / "flaky.marker"
    metrics_config(env, f"127.0.0.1:{port}", marker)
    d = daemons(env)
    ev = d.wait_for("metrics_listening")[0]
    assert ev["listen"] == f"127.0.0.1:{port}"
    d.base = f"http://127.0.0.1:{port}"
    d.marker = marker
    return d


def sample(text, name_and_labels):
    for line in text.splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_endpoint_passes_promtool(daemon):
    daemon.wait_for(lambda e: e.get("event") == "fast_complete", what="fast_complete")
    status, body = http_get(daemon.base + "/metrics")
    assert status == 200
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=DEADLINE)
    assert r.returncode == 0, r.stdout + r.stderr
    for family in ["fleetkeeper_task_runs_total", "fleetkeeper_task_duration_seconds",
                   "fleetkeeper_task_items_total",
                   "fleetkeeper_task_last_success_timestamp_seconds",
                   "fleetkeeper_task_running", "fleetkeeper_servers", "fleetkeeper_server_up",
                   "fleetkeeper_server_response_time_seconds", "fleetkeeper_incidents_open",
                   "fleetkeeper_ansible_playbook_runs_total", "fleetkeeper_events_total",
                   "process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                   "process_start_time_seconds"]:
        assert f"# TYPE {family} " in body, family
    assert sample(body, 'fleetkeeper_task_runs_total{task="fast",status="success"}') >= 1
    assert sample(body, 'fleetkeeper_task_items_total{task="fast",item="lines_output"}') >= 1
    assert sample(body, 'fleetkeeper_task_duration_seconds_count{task="fast"}') >= 1
    assert sample(body, 'fleetkeeper_events_total{level="info"}') > 0
    assert sample(body, "fleetkeeper_incidents_open") == 0
    assert sample(body, "fleetkeeper_store_scrape_error") == 0


def test_shipped_prometheus_config_and_rules_pass_promtool():
    for args in (["check", "config", str(PROM_CONFIG)], ["check", "rules", str(PROM_RULES)]):
        r = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=DEADLINE)
        assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_is_consistent_and_logql_parses():
    dash = dashboard()
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    provisioned = {d["uid"]: d["type"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    refs = []
    for p in all_panels(dash):
        refs += [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]
    refs += [v.get("datasource") for v in dash["templating"]["list"]]
    for ref in filter(None, refs):
        assert provisioned.get(ref["uid"]) == ref["type"], f"unresolved data source {ref}"
    titles = " | ".join(p["title"] for p in all_panels(dash))
    for want in ["Runs per task", "Failures per task", "Duration percentiles", "Items per run",
                 "Time since last success", "Servers by status", "Server health",
                 "Server response time", "Open incidents", "Ansible results",
                 "Log volume by level", "Recent errors", "Correlation trace", "Slow operations"]:
        assert want in titles, want
    logql = [substitute(e) for _, e in dashboard_queries("loki")]
    assert len(logql) >= 4
    for res in parse_logql(logql):
        assert res["ok"], f"LogQL does not parse: {res}"
    # The parser does report errors (so the check above means something).
    assert not parse_logql(['{service="x"} | json |'])[0]["ok"]


def test_shipped_promtail_and_compose_files_fit_together(env):
    """promtail: both jobs promote exactly service, level and task to labels
    from the JSON line, the journal job keeps fleetkeeper's unit, the
    container job's line filter keeps real fleetkeeper lines and drops
    others. compose: every mounted file exists and the config paths the
    services are started with are the mounted ones."""
    promtail = yaml.safe_load((ETC / "promtail" / "promtail.yml").read_text())
    jobs = {j["job_name"]: j for j in promtail["scrape_configs"]}
    assert set(jobs) == {"fleetkeeper-journal", "fleetkeeper-containers"}
    for job in jobs.values():
        stages = job["pipeline_stages"]
        (labels,) = [st["labels"] for st in stages if "labels" in st]
        assert set(labels) == {"service", "level", "task"}
        (extract,) = [st["json"]["expressions"] for st in stages if "json" in st]
        assert {k: extract[k] for k in labels} == {k: k for k in labels}
    keep = jobs["fleetkeeper-journal"]["relabel_configs"][0]
    assert keep["action"] == "keep"
    assert re.fullmatch(keep["regex"], "fleetkeeper.service")
    assert re.fullmatch(keep["regex"], "fleetkeeper@prod.service")
    assert not re.fullmatch(keep["regex"], "sshd.service")
    (match,) = [st["match"] for st in jobs["fleetkeeper-containers"]["pipeline_stages"]
                if "match" in st]
    assert match["action"] == "drop" and parse_logql([match["selector"]])[0]["ok"]
    drop_if = re.search(r'!~ "(.*)"$', match["selector"]).group(1).replace('\\"', '"')
    env.write_config("[task.hello]\ntype = command\ncommand = echo hi\n")
    lines = env.run("once", "hello").stdout.splitlines()
    assert len(lines) >= 3
    for line in lines:  # a real line is kept (the drop regex does not match it) ...
        assert re.search(drop_if, line), line
    assert not re.search(drop_if, '{"msg": "another program"}')  # ... others dropped

    compose = yaml.safe_load((ETC / "docker-compose.observability.yml").read_text())
    assert set(compose["services"]) == {"prometheus", "loki", "promtail", "grafana"}
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src, dst = vol.split(":")[:2]
            if src.startswith("./"):
                assert (ETC / src[2:]).exists(), f"{name}: {src} missing"
    mounts = {name: {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}
              for name, svc in compose["services"].items()}
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose["services"]["prometheus"]["command"]
    assert mounts["prometheus"]["/etc/prometheus"] == "./prometheus"
    assert compose["services"]["promtail"]["command"] == "-config.file=/etc/promtail/promtail.yml"
    assert mounts["promtail"]["/etc/promtail"] == "./promtail"
    provider = yaml.safe_load((ETC / "grafana" / "provisioning" / "dashboards" / "fleetkeeper.yml")
                              .read_text())["providers"][0]
    assert mounts["grafana"][provider["options"]["path"]] == "./grafana/dashboards"
    assert mounts["grafana"]["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_prometheus_evaluates_every_dashboard_and_alert_query(daemon, tmp_path):
    daemon.wait_for(lambda e: e.get("event") == "flaky_complete", what="flaky_complete")
    daemon.marker.touch()
    prom = Prometheus(tmp_path, daemon.base.removeprefix("http://"))
    try:
        prom.wait_ready()
        prom.wait_data('up{job="fleetkeeper"} == 1')
        queries = [("panel " + t, substitute(e)) for t, e in dashboard_queries("prometheus")]
        queries += [("alert " + a, e) for a, e in rule_exprs()]
        assert len(queries) >= 15
        for what, expr in queries:
            ans = prom.query(expr)
            assert ans["status"] == "success", f"{what}: {expr}: {ans}"
            if "fleetkeeper_task_" in expr:
                prom.wait_data(expr)
    finally:
        prom.stop()


def test_healthz_turns_503_when_the_store_is_locked(daemon, env):
    status, body = http_get(daemon.base + "/healthz")
    assert status == 200, body
    if ON_PG:
        return healthz_503_while_postgresql_refuses(daemon, env)
    # Root ignores file modes, so make the store unwritable by holding its
    # write lock: the probe's BEGIN IMMEDIATE fails after its busy timeout.
    con = sqlite3.connect(env.db, timeout=DEADLINE, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        status, body = http_get(daemon.base + "/healthz")
        assert status == 503 and '"store": false' in body, body
        assert http_get(daemon.base + "/metrics")[0] == 200
    finally:
        con.execute("ROLLBACK")
        con.close()
    status, body = http_get(daemon.base + "/healthz")
    assert status == 200 and '"loop": true' in body, body


def healthz_503_while_postgresql_refuses(daemon, env):
    """PostgreSQL's BEGIN takes no lock: the store is unusable when the
    database refuses the daemon's connections (its sessions terminated)."""
    db = env.dbname
    env.pg.admin(f"ALTER DATABASE {db} ALLOW_CONNECTIONS false",
                 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                 f" WHERE datname = '{db}' AND pid <> pg_backend_pid()")
    env.close()
    try:
        wait_until(lambda: http_get(daemon.base + "/healthz")[0] == 503,
                   what="/healthz 503 while the database refuses connections")
        status, body = http_get(daemon.base + "/healthz")
        assert status == 503 and '"store": false' in body, body
        assert http_get(daemon.base + "/metrics")[0] == 200
    finally:
        env.pg.admin(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
    wait_until(lambda: http_get(daemon.base + "/healthz")[0] == 200,
               what="/healthz 200 once the database is back")
    status, body = http_get(daemon.base + "/healthz")
    assert status == 200 and '"loop": true' in body, body


def test_counters_survive_reload(daemon):
    daemon.wait_for(lambda e: e.get("event") == "fast_complete", count=2, what="2 fast runs")
    key = 'fleetkeeper_task_runs_total{task="fast",status="success"}'
    before = sample(http_get(daemon.base + "/metrics")[1], key)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("config_reloaded")
    after = sample(http_get(daemon.base + "/metrics")[1], key)
    assert before >= 2 and after >= before


def test_busy_address_is_reported_and_the_daemon_runs_on(env, daemons):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        listen = f"127.0.0.1:{s.getsockname()[1]}"
        metrics_config(env, listen, env.dir / "m")
        d = daemons(env)
        ev = d.wait_for("metrics_listen_failed")[0]
        assert ev["level"] == "error" and ev["listen"] == listen
        assert "Address already in use" in ev["error"]
        d.wait_for("fast_complete")


def test_empty_listen_turns_the_endpoint_off(env, daemons):
    metrics_config(env, "", env.dir / "m")
    d = daemons(env)
    d.wait_for("fast_complete")
    assert not d.named("metrics_listening") and not d.named("metrics_listen_failed")
