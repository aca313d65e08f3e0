"""`fleetkeeper known-hosts scan|forget` and the host key hints, against a
real OpenSSH sshd on loopback (issue 14, trial item 5).

Fingerprints are compared with what `ssh-keygen -lf` prints for the sshd's
own host key file. Only 127.0.0.0/8 is contacted.
"""
import json
import subprocess
import time

import pytest

from conftest import parse_lines
from sshd import SSH_KEYGEN, Sshd, closed_port, have_sshd, keygen

pytestmark = pytest.mark.skipif(not have_sshd(), reason="needs root and OpenSSH sshd/ssh-keygen")


@pytest.fixture
def sshd(tmp_path):
    s = Sshd(tmp_path).start()
    yield s
    s.stop()


def fingerprint(pub_path):
    """What `ssh-keygen -lf` prints as the fingerprint of a .pub file."""
    r = subprocess.run([SSH_KEYGEN, "-lf", str(pub_path)], capture_output=True, text=True,
                       check=True)
    return r.stdout.split()[1]


def configure(env, sshd, policy="strict", failure_threshold=2):
    kh = env.dir / "known_hosts"
    env.write_config(
        f"""[ssh]
user = root
key_file = {sshd.client_key if sshd else env.dir / "no_key"}
known_hosts = {kh}
host_key_policy = {policy}
timeout = 5s

[task.health_check]
failure_threshold = {failure_threshold}
check_timeout = 5s
""")
    return kh


def add_servers(env, rows):
    """rows: (handle, ip, port). The schema exists after a first once."""
    r = env.run("once", "health_check")
    assert r.returncode == 0, r.stderr
    con = env.connect()
    now = time.time()
    with con:
        for handle, ip, port in rows:
            con.execute("INSERT INTO servers (handle, ip, port, ssh_user, status, created_at,"
                        " updated_at) VALUES (?, ?, ?, 'root', 'ready', ?, ?)",
                        (handle, ip, port, now, now))
    con.close()


def scan_json(env, *args):
    r = env.run("known-hosts", "scan", *args, "--json")
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines()], r


def ssh_test(env, sshd):
    r = env.run("ssh-test", f"127.0.0.1:{sshd.port}")
    ev = [e for e in parse_lines(r.stdout) if e.get("event") == "ssh_connection_test"]
    assert len(ev) == 1, r.stdout + r.stderr
    return r.returncode, ev[0]


def health_check(env, handle):
    r = env.run("once", "health_check")
    checks = [e for e in parse_lines(r.stdout)
              if e.get("event") == "server_health_check" and e.get("server_handle") == handle]
    assert len(checks) == 1, r.stdout + r.stderr
    return checks[0]


def test_scan_prints_the_fingerprint_ssh_keygen_prints(env, sshd):
    kh = configure(env, sshd)
    add_servers(env, [("vps-1", "127.0.0.1", sshd.port)])
    expected = fingerprint(str(sshd.host_key) + ".pub")
    assert expected.startswith("SHA256:") and not expected.endswith("=")

    r = env.run("known-hosts", "scan", "vps-1")
    assert r.returncode == 0, r.stdout + r.stderr  # unknown is what a scan reports, not a failure
    row = [line.split() for line in r.stdout.splitlines() if line.startswith("vps-1")]
    assert row == [["vps-1", f"127.0.0.1:{sshd.port}", "ssh-ed25519", expected, "unknown"]]
    assert "fleetkeeper known-hosts scan vps-1 --accept" in r.stderr
    assert not kh.exists()  # nothing recorded without --accept

    rc, rows, _ = scan_json(env, "vps-1")
    assert rc == 0
    assert rows == [{"server": "vps-1", "host": "127.0.0.1", "port": sshd.port,
                     "result": "unknown", "key_type": "ssh-ed25519", "fingerprint": expected,
                     "known_hosts": str(kh), "error": rows[0]["error"],
                     "error_type": "hostkey_unknown",
                     "hint": "fleetkeeper known-hosts scan vps-1 --accept"}]
    assert expected in rows[0]["error"]


def test_scan_accept_then_strict_ssh_test_and_health_check_pass(env, sshd):
    kh = configure(env, sshd)
    add_servers(env, [("vps-1", "127.0.0.1", sshd.port)])
    rc, e = ssh_test(env, sshd)
    assert rc == 1 and e["error_type"] == "hostkey_unknown"
    assert e["fingerprint"] == fingerprint(str(sshd.host_key) + ".pub")
    assert e["hint"] == f"fleetkeeper known-hosts scan 127.0.0.1:{sshd.port} --accept"
    check = health_check(env, "vps-1")
    assert (check["error_type"], check["fingerprint"], check["hint"]) == (
        "hostkey_unknown", e["fingerprint"], "fleetkeeper known-hosts scan vps-1 --accept")

    rc, rows, _ = scan_json(env, "vps-1", "--accept")
    assert rc == 0 and rows[0]["result"] == "recorded" and rows[0]["hint"] is None
    assert kh.read_text() == sshd.known_hosts_line()
    rc, rows, _ = scan_json(env, "--all", "--accept")
    assert rc == 0 and [r["result"] for r in rows] == ["match"]
    assert kh.read_text() == sshd.known_hosts_line()  # recorded once

    rc, e = ssh_test(env, sshd)
    assert rc == 0 and e["host_key_policy"] == "strict", e
    assert e["fingerprint"] == rows[0]["fingerprint"] and e["hint"] is None
    check = health_check(env, "vps-1")
    assert check["status"] == "healthy" and check["fingerprint"] is None


def test_mismatch_is_never_overwritten_until_forgotten(env, sshd, tmp_path):
    kh = configure(env, sshd, failure_threshold=1)
    add_servers(env, [("vps-1", "127.0.0.1", sshd.port)])
    impostor = keygen(tmp_path / "impostor_host_key")
    kind, key = open(str(impostor) + ".pub").read().split()[:2]
    seeded = f"# seeded\n[127.0.0.1]:{sshd.port} {kind} {key}\n127.0.0.1 {kind} {key}\n"
    kh.write_text(seeded)
    offered = fingerprint(str(sshd.host_key) + ".pub")
    fix = ("if the server was rebuilt: fleetkeeper known-hosts forget vps-1, then "
           "fleetkeeper known-hosts scan vps-1 --accept")

    rc, e = ssh_test(env, sshd)
    assert rc == 1 and (e["stage"], e["error_type"]) == ("hostkey", "hostkey_mismatch")
    assert (e["key_type"], e["fingerprint"]) == ("ssh-ed25519", offered)
    addr = f"127.0.0.1:{sshd.port}"
    assert e["hint"] == fix.replace("vps-1", addr)

    check = health_check(env, "vps-1")
    assert check["error_type"] == "hostkey_mismatch"
    assert (check["key_type"], check["fingerprint"], check["hint"]) == ("ssh-ed25519", offered,
                                                                         fix)
    details = json.loads(env.sql("SELECT details FROM incidents")[0][0])
    assert (details["fingerprint"], details["hint"]) == (offered, fix)

    rc, rows, r = scan_json(env, "vps-1", "--accept")
    assert rc == 1, r.stderr
    assert rows[0]["result"] == "mismatch" and rows[0]["fingerprint"] == offered
    assert rows[0]["hint"] == fix
    assert kh.read_text() == seeded  # a mismatch is never overwritten by scan

    r = env.run("known-hosts", "forget", "vps-1")
    assert r.returncode == 0, r.stderr
    assert "1 entry removed" in r.stdout
    # only the name vps-1 is looked up under; the port 22 entry is another endpoint
    assert kh.read_text() == f"# seeded\n127.0.0.1 {kind} {key}\n"
    rc, rows, _ = scan_json(env, "vps-1", "--accept")
    assert rc == 0 and rows[0]["result"] == "recorded"
    rc, e = ssh_test(env, sshd)
    assert rc == 0, e
    assert health_check(env, "vps-1")["status"] == "healthy"


def test_forget_hashed_entry_and_json(env, sshd):
    kh = configure(env, sshd)
    add_servers(env, [("vps-1", "127.0.0.1", sshd.port)])
    kh.write_text(sshd.known_hosts_line())
    subprocess.run([SSH_KEYGEN, "-q", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert kh.read_text().startswith("|1|")
    r = env.run("known-hosts", "forget", "vps-1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"server": "vps-1", "host": "127.0.0.1", "port": sshd.port,
                                    "removed": 1, "known_hosts": str(kh)}
    assert kh.read_text() == ""
    r = env.run("known-hosts", "forget", f"127.0.0.1:{sshd.port}")
    assert r.returncode == 0 and "0 entries removed" in r.stdout


def test_scan_all_reports_a_failed_server_and_exits_1(env, sshd):
    configure(env, sshd)
    add_servers(env, [("vps-1", "127.0.0.1", sshd.port), ("vps-2", "127.0.0.1", closed_port())])
    rc, rows, _ = scan_json(env, "--all", "--accept")
    assert rc == 1
    by = {r["server"]: r for r in rows}
    assert by["vps-1"]["result"] == "recorded"
    assert (by["vps-2"]["result"], by["vps-2"]["error_type"]) == ("failed", "connect_refused")
    assert by["vps-2"]["fingerprint"] is None and by["vps-2"]["hint"] is None


@pytest.mark.parametrize("args", [[], ["bogus"], ["scan"], ["scan", "--all", "vps-1"],
                                  ["scan", "no-such-server"], ["scan", "vps-1", "--bogus"],
                                  ["scan", "vps-1", "--timeout"], ["forget"],
                                  ["forget", "--accept", "vps-1"]])
def test_usage_errors_exit_2(env, args):
    configure(env, None)
    add_servers(env, [("vps-1", "127.0.0.1", closed_port())])
    r = env.run("known-hosts", *args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
