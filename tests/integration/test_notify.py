"""Notification delivery (issue 9): the daemon's sender against a recording
receiver on loopback (notify_server.py) that speaks the Telegram Bot API, a
Slack-style webhook and a generic signed webhook.

Most tests insert rows into the notifications table of a running daemon's
state.db (as a producer in another process would) and wait for the requests.
"""
import hashlib
import hmac
import json
import os
import signal
import time

import pytest

from conftest import DEADLINE, Daemon, parse_lines, wait_until
from notify_server import NotifyServer

TOKEN = "123456:SECRET-TOKEN-abcdef"
SECRET = "whsec-very-secret-42"


@pytest.fixture
def daemons():
    """conftest's daemons, plus: no sanitizer report on any daemon's stderr."""
    started = []

    def start_daemon(env, **kw):
        d = Daemon(env, **kw)
        started.append(d)
        return d

    yield start_daemon
    reports = []
    for d in started:
        err = d.stop()
        if "Sanitizer" in err or "runtime error:" in err:
            reports.append(err)
    assert not reports, reports[0][:4000]


@pytest.fixture
def receiver():
    srv = NotifyServer(token=TOKEN)
    yield srv
    srv.close()


def write_secrets(env, srv, token=TOKEN):
    (env.dir / "tg.token").write_text(token + "\n")
    (env.dir / "slack.url").write_text(f"{srv.url}/slack/T000/B000/XXXX\n")
    (env.dir / "wh.secret").write_text(SECRET + "\n")


def telegram(env, srv, name="tg", extra=""):
    return f"""[notify.{name}]
type = telegram
api_url = {srv.url}
token_file = {env.dir / 'tg.token'}
chat_ids = 111, -222
{extra}
"""


def slack(env, name="sl", extra=""):
    return f"""[notify.{name}]
type = slack
url_file = {env.dir / 'slack.url'}
{extra}
"""


def webhook(env, srv, name="wh", extra=""):
    return f"""[notify.{name}]
type = webhook
api_url = {srv.url}/hook
secret_file = {env.dir / 'wh.secret'}
{extra}
"""


def configure(env, srv, sections, token=TOKEN):
    write_secrets(env, srv, token)
    env.write_config(sections)


def start(daemons, env, notifiers=1):
    d = daemons(env)
    d.wait_for("notifier_started", count=notifiers)
    return d


def add(env, rows, created_at=None):
    """rows: (kind, level, title, body, correlation_id). Returns the ids."""
    con = env.connect()
    ids = []
    with con:
        for kind, level, title, body, cid in rows:
            cur = con.execute(
                "INSERT INTO notifications (created_at, kind, level, title, body, correlation_id,"
                " fields) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (created_at or time.time(), kind, level, title, body, cid,
                 json.dumps({"server_handle": title.split()[-1]})))
            ids.append(cur.lastrowid)
    con.close()
    return ids


def outage(n=1, prefix="web"):
    rows = []
    for i in range(n):
        rows.append(("server_unreachable", "critical", f"Server unreachable: {prefix}-{i}",
                     "3 checks failed in a row", f"run_health_check_1700000000_{i:04x}"))
    return rows


def deliveries(env, notifier):
    return env.sql("SELECT notification_id, state, attempts, progress, last_error"
                   " FROM notification_deliveries WHERE notifier = ? ORDER BY notification_id",
                   notifier)


def stored_events(env, name):
    return [json.loads(r[0]) for r in
            env.sql("SELECT line FROM events WHERE event = ? ORDER BY id", name)]


# ---- configuration ----

def test_config_requires_type_keys(env):
    env.write_config("""[notify.a]
type = telegram
chat_ids = 1

[notify.b]
type = slack

[notify.c]
type = webhook
api_url = http://127.0.0.1:1/hook

[notify.d]
type = slack
url_file = /x
chat_ids = 5
""")
    r = env.run("check-config")
    assert r.returncode == 2
    conf = str(env.conf)
    err = r.stderr
    assert f"{conf}:" in err
    assert "[notify.a] token_file or token_env is required for type telegram" in err
    assert "[notify.b] url_file is required for type slack" in err
    assert "[notify.c] secret_file is required for type webhook" in err
    assert "[notify.d] chat_ids: not used by type slack" in err
    lines = [l for l in err.splitlines() if "[notify.d] chat_ids" in l]
    lineno = env.conf.read_text().splitlines().index("chat_ids = 5") + 1
    assert lines and lines[0].startswith(f"{conf}:{lineno}:"), lines


# ---- delivery ----

def test_delivered_in_order_once_each_with_correlation_id(env, receiver, daemons):
    configure(env, receiver, telegram(env, receiver) + slack(env) + webhook(env, receiver))
    d = start(daemons, env, notifiers=3)
    rows = outage(3) + [("server_recovered", "info", "Server recovered: web-0", None,
                         "run_health_check_1700000060_beef")]
    ids = add(env, rows)
    # telegram: 4 messages x 2 chats; slack 4; webhook 4.
    receiver.wait_requests(16)
    d.wait_for("notification_sent", count=12)
    time.sleep(0)  # nothing more must come: checked through the delivery rows below
    tg = [r for r in receiver.requests if r.kind == "telegram"]
    assert [r.json["chat_id"] for r in tg] == [111, -222] * 4
    for kind in ("telegram", "slack", "webhook"):
        got = [r for r in receiver.requests if r.kind == kind]
        texts = [r.json["text"] for r in got]
        if kind == "telegram":
            texts = texts[::2]
        assert len(texts) == 4, (kind, texts)
        for text, row in zip(texts, rows):
            assert row[2] in text
            assert f"correlation_id: {row[4]}" in text
            assert f"fleetkeeper trace {row[4]}" in text
    for name in ("tg", "sl", "wh"):
        assert [(i, s, a) for i, s, a, _, _ in deliveries(env, name)] == \
            [(i, "sent", 1) for i in ids]
    queued = d.named("notification_queued")
    assert {(e["notifier"], e["notification_id"]) for e in queued} == \
        {(n, i) for n in ("tg", "sl", "wh") for i in ids}
    sent = [e for e in d.named("notification_sent") if e["notifier"] == "tg"]
    assert [e["notification_id"] for e in sent] == ids
    assert all(e["attempt"] == 1 for e in sent)
    assert sent[0]["correlation_id"] == rows[0][4]
    # The sender's events are in the store, traceable by correlation id.
    r = env.run("trace", rows[0][4])
    assert "notification_sent" in r.stdout
    assert len(receiver.requests) == 16


def test_filters_min_level_and_events(env, receiver, daemons):
    configure(env, receiver,
              webhook(env, receiver, "crit", "min_level = critical\n") +
              webhook(env, receiver, "rec", "events = server_recovered, project_missing\n"))
    d = start(daemons, env, notifiers=2)
    ids = add(env, outage(1) + [("server_recovered", "info", "Server recovered: web-0", None,
                                 "cid-2"),
                                ("server_missing", "warning", "Server missing: x-1", None,
                                 "cid-3")])
    d.wait_for("notification_sent", count=2)
    receiver.wait_requests(2)
    assert [r[0] for r in deliveries(env, "crit")] == [ids[0]]
    assert [r[0] for r in deliveries(env, "rec")] == [ids[1]]
    # A third row for "crit" proves nothing else is pending for it.
    add(env, outage(1, prefix="db"))
    d.wait_for("notification_sent", count=3)
    assert len(receiver.requests) == 3


def test_new_notifier_starts_at_newest_row(env, receiver, daemons):
    configure(env, receiver, webhook(env, receiver))
    r = env.run("check-config")
    assert r.returncode == 0, r.stderr
    d = start(daemons, env)
    d.stop()
    # Rows written before the notifier existed (here: before its cursor).
    con = env.connect()
    with con:
        con.execute("DELETE FROM notifier_cursor")
    con.close()
    add(env, outage(2, prefix="old"))
    d = start(daemons, env)
    ids = add(env, outage(1, prefix="new"))
    d.wait_for("notification_sent")
    assert [r.json["id"] for r in receiver.wait_requests(1)] == ids
    assert [r[0] for r in deliveries(env, "wh")] == ids


def test_receiver_down_then_up_everything_arrives(env, receiver, daemons):
    configure(env, receiver, telegram(env, receiver) + slack(env))
    d = start(daemons, env, notifiers=2)
    receiver.down()
    ids = add(env, outage(3))
    failed = d.wait_for(lambda e: e.get("event") == "notification_failed", count=4,
                        what="notification_failed x4")
    assert all(e["error_type"] == "network" and e["attempt"] >= 1 for e in failed)
    assert {e["notification_id"] for e in failed} == {ids[0]}  # head of line only
    receiver.up()
    receiver.wait_requests(6 + 3)
    d.wait_for(lambda e: e.get("event") == "notification_sent" and e["notifier"] == "tg",
               count=3, what="tg sent x3")
    d.wait_for(lambda e: e.get("event") == "notification_sent" and e["notifier"] == "sl",
               count=3, what="sl sent x3")
    texts = [r.json["text"] for r in receiver.requests if r.kind == "slack"]
    assert [t.splitlines()[0] for t in texts] == [f"[critical] Server unreachable: web-{i}"
                                                   for i in range(3)]
    for name in ("tg", "sl"):
        rows = deliveries(env, name)
        assert [(i, s) for i, s, *_ in rows] == [(i, "sent") for i in ids]
        assert rows[0][2] >= 2  # the head was tried while the receiver was down


def test_kill9_mid_delivery_nothing_lost(env, receiver, daemons):
    configure(env, receiver, webhook(env, receiver))
    d = start(daemons, env)
    receiver.hold_next()
    ids = add(env, outage(3))
    receiver.wait_held()
    # The attempt is on record before the request left.
    rows = deliveries(env, "wh")
    assert (rows[0][1], rows[0][2]) == ("sending", 1)
    os.killpg(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    receiver.release()
    d2 = start(daemons, env)
    d2.wait_for("notification_sent", count=3)
    got = [r.json["id"] for r in receiver.ok_requests()]
    assert got == ids
    rows = deliveries(env, "wh")
    assert [(i, s) for i, s, *_ in rows] == [(i, "sent") for i in ids]
    assert rows[0][2] == 2  # sent again after the crash: the transport forced it
    assert [e["attempt"] for e in d2.named("notification_sent")] == [2, 1, 1]


def test_telegram_429_retry_after_honoured(env, receiver, daemons):
    configure(env, receiver, telegram(env, receiver, extra="chat_ids = 111\n").replace(
        "chat_ids = 111, -222\n", ""))
    d = start(daemons, env)
    receiver.rate_limit_next(retry_after=2)
    add(env, outage(1))
    reqs = receiver.wait_requests(2)
    d.wait_for("notification_sent")
    assert reqs[1].time - reqs[0].time >= 2.0 - 0.05
    failed = d.named("notification_failed")
    assert failed[0]["http_status"] == 429 and failed[0]["retry_in_sec"] == 2
    assert "429" in failed[0]["error"]
    assert d.named("notification_sent")[0]["attempt"] == 2


def test_burst_of_50_folded_within_rate_limit(env, receiver, daemons):
    configure(env, receiver, slack(env, extra="rate_limit_per_minute = 10\n"))
    d = start(daemons, env)
    ids = add(env, outage(50))
    d.wait_for("notifications_folded")
    d.wait_for("notification_sent", count=10)
    reqs = receiver.wait_requests(10)
    span = reqs[-1].time - reqs[0].time
    assert len(reqs) == 10 and span < 60
    # 9 on their own, the 10th carries the other 41.
    summary = reqs[9].json["text"]
    assert "41 notifications folded" in summary
    lines = summary.splitlines()
    listed = [l for l in lines if l.startswith("- [critical] Server unreachable: web-")]
    assert listed[0].startswith("- [critical] Server unreachable: web-9 (")
    assert "(fleetkeeper trace run_health_check_1700000000_0009)" in listed[0]
    more = [l for l in lines if l.startswith("... and ")]
    assert len(listed) + (int(more[0].split()[2]) if more else 0) == 41, lines[-3:]
    assert len(summary) <= 3800
    rows = deliveries(env, "sl")
    states = {}
    for i, s, *_ in rows:
        states[s] = states.get(s, 0) + 1
    assert states == {"sent": 10, "folded": 41}
    assert not d.named("notification_dropped")
    folded = d.named("notifications_folded")[0]
    assert (folded["folded"], folded["first_id"], folded["last_id"]) == (41, ids[9], ids[49])
    # Nothing more within the minute: the window is full.
    add(env, outage(1, prefix="late"))
    time.sleep(2.5)
    assert len(receiver.requests) == 10


def test_webhook_signature_verifies(env, receiver, daemons):
    configure(env, receiver, webhook(env, receiver))
    d = start(daemons, env)
    ids = add(env, outage(1))
    d.wait_for("notification_sent")
    req = receiver.wait_requests(1)[0]
    ts = req.headers["X-Fleetkeeper-Timestamp"]
    want = "sha256=" + hmac.new(SECRET.encode(), (ts + "." + req.raw).encode(),
                                hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["X-Fleetkeeper-Signature"], want)
    assert abs(int(ts) - time.time()) < 60
    body = req.json
    assert body["id"] == ids[0] and body["kind"] == "server_unreachable"
    assert body["level"] == "critical" and body["fields"] == {"server_handle": "web-0"}
    assert body["correlation_id"] == "run_health_check_1700000000_0000"
    assert req.headers["X-Fleetkeeper-Delivery"] == f"wh-{ids[0]}"


def test_token_never_in_events_or_errors(env, receiver, daemons):
    # A wrong token: the receiver echoes the URL path (with the token) back.
    configure(env, receiver, telegram(env, receiver), token=TOKEN)
    (env.dir / "tg.token").write_text("999:WRONG-TOKEN-zyxw\n")
    d = start(daemons, env)
    add(env, outage(1))
    d.wait_for("notification_failed")
    receiver.down()  # and a connection error
    d.wait_for("notification_failed", count=2)
    d.stop()
    for secret in ("WRONG-TOKEN-zyxw", "999:WRONG"):
        assert secret not in "".join(d.raw)
        assert not env.sql("SELECT id FROM events WHERE line LIKE ?", f"%{secret}%")
        assert not env.sql("SELECT notification_id FROM notification_deliveries"
                           " WHERE last_error LIKE ?", f"%{secret}%")
    errors = [e["error"] for e in stored_events(env, "notification_failed")]
    assert any("401" in e and "***" in e for e in errors), errors


def test_old_rows_dropped_only_past_max_age(env, receiver, daemons):
    configure(env, receiver, webhook(env, receiver, extra="max_age = 30s\n"))
    d = start(daemons, env)
    receiver.down()
    old = add(env, outage(1, prefix="old"), created_at=time.time() - 3600)
    new = add(env, outage(1, prefix="new"))
    e = d.wait_for("notification_dropped")[0]
    assert e["notifier"] == "wh" and e["notification_id"] == old[0] and e["age_sec"] >= 3600
    receiver.up()
    d.wait_for("notification_sent")
    assert [r.json["id"] for r in receiver.wait_requests(1)] == new
    assert [(i, s) for i, s, *_ in deliveries(env, "wh")] == [(old[0], "dropped"),
                                                               (new[0], "sent")]


def test_notify_test_command(env, receiver):
    configure(env, receiver, telegram(env, receiver) + webhook(env, receiver))
    r = env.run("notify", "test", "tg")
    assert r.returncode == 0, r.stdout + r.stderr
    ev = [e for e in parse_lines(r.stdout) if e["event"] == "notification_test"][0]
    assert ev["success"] is True and ev["notifier"] == "tg" and ev["type"] == "telegram"
    assert len(receiver.requests) == 2
    assert "test message" in receiver.requests[0].json["text"]
    assert not env.store_exists() or not env.sql("SELECT id FROM notifications")

    receiver.down()
    r = env.run("notify", "test", "wh")
    assert r.returncode == 1
    ev = [e for e in parse_lines(r.stdout) if e["event"] == "notification_test"][0]
    assert ev["success"] is False and ev["error_type"] == "network" and ev["error"]
    assert TOKEN not in r.stdout + r.stderr

    assert "Sanitizer" not in r.stderr
    r = env.run("notify", "test", "nope")
    assert r.returncode == 2 and "nope" in r.stderr
    assert env.run("notify", "tset", "tg").returncode == 2
    assert env.run("notify", "test").returncode == 2


def test_notify_test_waits_a_short_retry_after_and_sends_once_more(env, receiver):
    """Telegram's flood control (429, retry_after 1) used to fail `notify
    test`; it now waits that second and sends again, once (issue 14)."""
    configure(env, receiver, telegram(env, receiver).replace("chat_ids = 111, -222\n",
                                                             "chat_ids = 111\n"))
    receiver.rate_limit_next(retry_after=1)
    r = env.run("notify", "test", "tg")
    assert r.returncode == 0, r.stdout + r.stderr
    ev = [e for e in parse_lines(r.stdout) if e["event"] == "notification_test"][0]
    assert ev["success"] is True
    reqs = receiver.wait_requests(2)
    assert len(receiver.requests) == 2
    assert reqs[1].time - reqs[0].time >= 1.0 - 0.05
    assert "retry_after 1" in r.stderr
    # a second 429 in a row is not waited for again; a long wait not at all
    receiver.rate_limit_next(retry_after=1, n=2)
    r = env.run("notify", "test", "tg")
    assert r.returncode == 1 and len(receiver.requests) == 4
    receiver.rate_limit_next(retry_after=3600)
    r = env.run("notify", "test", "tg")
    assert r.returncode == 1 and len(receiver.requests) == 5
    ev = [e for e in parse_lines(r.stdout) if e["event"] == "notification_test"][0]
    assert ev["http_status"] == 429 and TOKEN not in r.stdout + r.stderr


def test_sighup_starts_a_new_notifier(env, receiver, daemons):
    env.write_config("")
    write_secrets(env, receiver)
    d = daemons(env)
    d.wait_for("scheduler_started")
    assert not d.named("notifier_started")  # none configured: no sender thread
    configure(env, receiver, slack(env))
    d.signal(signal.SIGHUP)
    d.wait_for("notifier_started")
    ids = add(env, outage(1))
    d.wait_for("notification_sent")
    assert "web-0" in receiver.wait_requests(1)[0].json["text"]
    assert [r[0] for r in deliveries(env, "sl")] == ids


def test_old_notifications_pruned_with_events(env, receiver, daemons):
    configure(env, receiver, webhook(env, receiver))
    d = start(daemons, env)
    d.stop()
    long_ago = time.time() - 40 * 86400
    old = add(env, outage(3, prefix="old"), created_at=long_ago)
    con = env.connect()
    with con:
        con.execute("INSERT INTO notification_deliveries (notifier, notification_id, state,"
                    " updated_at) VALUES ('wh', ?, 'sent', ?)", (old[0], long_ago))
        con.execute("UPDATE notifier_cursor SET last_id = ?", (old[-1],))
    con.close()
    d = start(daemons, env)
    e = d.wait_for("notifications_pruned")[0]
    assert e["notifications_deleted"] == 2  # the newest row always stays
    assert [r[0] for r in env.sql("SELECT id FROM notifications")] == [old[-1]]
    assert not env.sql("SELECT * FROM notification_deliveries")
    ids = add(env, outage(1, prefix="new"))
    assert ids[0] > old[-1]
    d.wait_for("notification_sent")


# ---- end to end: a health_check outage and recovery ----

def test_health_check_outage_and_recovery_messages(env, receiver, daemons, tmp_path):
    from sshd import Sshd, have_sshd
    import test_health_check as hc
    if not have_sshd():
        pytest.skip("needs root and OpenSSH sshd/ssh-keygen")
    up = Sshd(tmp_path, name="up", nports=1).start()
    down = Sshd(tmp_path, name="down", nports=1, client_key=up.client_key)
    try:
        write_secrets(env, receiver)
        hc.configure(env, up.client_key,
                     task_extra="\n" + telegram(env, receiver) + slack(env))
        r, _ = hc.once(env)
        assert r.returncode == 0, r.stderr
        hc.add_servers(env, [("web-1", "127.0.0.1", up.port, "ready"),
                             ("db-1", "127.0.0.1", down.ports[0], "in_use")])
        d = start(daemons, env, notifiers=2)
        cids = []
        for _ in range(2):  # failure_threshold = 2: the second run opens the incident
            r, ev = hc.once(env)
            assert r.returncode == 0, r.stderr
        cids.append(hc.named(ev, "health_check_start")[0]["correlation_id"])
        assert len(hc.named(ev, "server_unhealthy_incident_created")) == 1
        down.start()
        r, ev = hc.once(env)
        assert r.returncode == 0, r.stderr
        assert hc.named(ev, "server_recovered")
        cids.append(hc.named(ev, "health_check_start")[0]["correlation_id"])

        d.wait_for(lambda e: e.get("event") == "notification_sent" and e["notifier"] == "sl",
                   count=2, what="two slack messages")
        d.wait_for(lambda e: e.get("event") == "notification_sent" and e["notifier"] == "tg",
                   count=2, what="two telegram messages")
        slack_texts = [r.json["text"] for r in receiver.requests if r.kind == "slack"]
        tg = [r.json for r in receiver.requests if r.kind == "telegram"]
        assert [m["chat_id"] for m in tg] == [111, -222, 111, -222]
        assert [m["text"] for m in tg[::2]] == slack_texts
        assert len(slack_texts) == 2, slack_texts
        first, second = slack_texts
        assert first.startswith("[critical]") and "db-1" in first
        assert "unreachable" in first.splitlines()[0].lower()
        assert second.startswith("[info]") and "db-1" in second
        assert "recovered" in second.splitlines()[0].lower()
        for text, cid in zip(slack_texts, cids):
            assert f"fleetkeeper trace {cid}" in text
        kinds = env.sql("SELECT n.kind FROM notification_deliveries d JOIN notifications n"
                        " ON n.id = d.notification_id WHERE d.notifier = 'sl' ORDER BY n.id")
        assert kinds == [("server_unreachable",), ("server_recovered",)]
    finally:
        down.stop()
        up.stop()
