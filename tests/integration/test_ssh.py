"""`fleetkeeper ssh-test` against a real OpenSSH sshd on loopback (issue 4).

Each case checks the exit code, and the stage and error_type of the one
ssh_connection_test event. Only 127.0.0.0/8 is contacted.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, base_env, parse_lines
from sshd import (SSH_KEYGEN, FullBacklogListener, Sshd, SilentListener, closed_port, have_sshd,
                  keygen)

pytestmark = pytest.mark.skipif(not have_sshd(), reason="needs root and OpenSSH sshd/ssh-keygen")


@pytest.fixture
def sshd(tmp_path):
    s = Sshd(tmp_path).start()
    yield s
    s.stop()


def configure(env, key, policy="accept-new", timeout="5s", known_hosts=None, extra=""):
    kh = known_hosts or (env.dir / "known_hosts")
    env.write_config(
        f"""[ssh]
user = root
key_file = {key}
known_hosts = {kh}
host_key_policy = {policy}
timeout = {timeout}
{extra}""")
    return kh


def fingerprint(sshd):
    """The sshd's host key fingerprint as `ssh-keygen -lf` prints it."""
    import subprocess
    r = subprocess.run([SSH_KEYGEN, "-lf", str(sshd.host_key) + ".pub"], capture_output=True,
                       text=True, check=True)
    return r.stdout.split()[1]


def ssh_test(env, *args):
    r = env.run("ssh-test", *args)
    events = [e for e in parse_lines(r.stdout) if e.get("event") == "ssh_connection_test"]
    assert len(events) == 1, (r.stdout, r.stderr)
    return r.returncode, events[0]


def test_healthy_host_runs_command(env, sshd):
    kh = configure(env, sshd.client_key)
    rc, e = ssh_test(env, f"root@127.0.0.1:{sshd.port}", "--command", "echo first; echo second")
    assert rc == 0, e
    assert e["success"] is True and e["stage"] == "exec"
    assert e["error"] is None and e["error_type"] is None
    assert e["exit_status"] == 0 and e["output"] == "first"
    assert e["host"] == "127.0.0.1" and e["port"] == sshd.port
    assert e["logger"] == "ssh" and isinstance(e["duration_ms"], int)
    assert e["hostkey_added"] is True
    assert kh.read_text() == sshd.known_hosts_line()
    # the offered key, whatever the outcome; a hint only for a host key failure
    assert (e["key_type"], e["fingerprint"], e["hint"]) == ("ssh-ed25519", fingerprint(sshd), None)


def test_command_exit_status_fails(env, sshd):
    configure(env, sshd.client_key)
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}", "--command", "exit 7")
    assert rc == 1
    assert (e["stage"], e["error_type"], e["exit_status"]) == ("exec", "command_failed", 7)


def test_wrong_client_key_fails_in_auth(env, sshd, tmp_path):
    other = keygen(tmp_path / "other_key")
    configure(env, other)
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 1
    assert (e["stage"], e["error_type"], e["success"]) == ("auth", "auth_failed", False)


def test_missing_key_file_fails_in_auth(env, sshd, tmp_path):
    configure(env, tmp_path / "no_such_key")
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 1
    assert (e["stage"], e["error_type"]) == ("auth", "credentials_unreadable")


def test_encrypted_key_with_passphrase_file(env, sshd, tmp_path):
    secret = "correct horse battery"
    key = keygen(tmp_path / "enc_key", passphrase=secret)
    sshd.authorized.write_text((tmp_path / "enc_key.pub").read_text())
    pf = tmp_path / "passphrase"
    pf.write_text(secret + "\n")
    kh = tmp_path / "kh"
    env.write_config(f"""[ssh]
key_file = {key}
passphrase_file = {pf}
known_hosts = {kh}
""")
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 0, e
    pf.write_text("wrong\n")
    r = env.run("ssh-test", f"127.0.0.1:{sshd.port}")
    assert r.returncode == 1
    e = parse_lines(r.stdout)[-1]
    assert (e["stage"], e["error_type"]) == ("auth", "auth_failed")
    assert secret not in r.stdout + r.stderr and "wrong" not in r.stdout + r.stderr


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_host_key_fails_in_hostkey(env, sshd, tmp_path, policy):
    kh = tmp_path / "kh_changed"
    impostor = keygen(tmp_path / "impostor_host_key")
    kind, key = open(str(impostor) + ".pub").read().split()[:2]
    kh.write_text(f"# a comment\n[127.0.0.1]:{sshd.port} {kind} {key}\n")
    before = kh.read_text()
    configure(env, sshd.client_key, policy=policy, known_hosts=kh)
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 1
    assert (e["stage"], e["error_type"]) == ("hostkey", "hostkey_mismatch")
    assert kh.read_text() == before
    # the offered key (not the recorded one) and the commands that fix it
    assert e["fingerprint"] == fingerprint(sshd) and e["fingerprint"] in e["error"]
    addr = f"127.0.0.1:{sshd.port}"
    assert e["hint"] == (f"if the server was rebuilt: fleetkeeper known-hosts forget {addr}, "
                         f"then fleetkeeper known-hosts scan {addr} --accept")


def test_strict_unknown_host_fails_and_known_host_passes(env, sshd, tmp_path):
    kh = tmp_path / "kh_strict"
    configure(env, sshd.client_key, policy="strict", known_hosts=kh)
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 1
    assert (e["stage"], e["error_type"]) == ("hostkey", "hostkey_unknown")
    assert not kh.exists()
    assert (e["key_type"], e["fingerprint"]) == ("ssh-ed25519", fingerprint(sshd))
    assert e["hint"] == f"fleetkeeper known-hosts scan 127.0.0.1:{sshd.port} --accept"
    kh.write_text(sshd.known_hosts_line())
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 0, e


def test_hashed_known_hosts_entry_matches(env, sshd, tmp_path):
    kh = tmp_path / "kh_hashed"
    kh.write_text(sshd.known_hosts_line())
    import subprocess
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert kh.read_text().startswith("|1|")
    configure(env, sshd.client_key, policy="strict", known_hosts=kh)
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 0, e


def test_accept_new_records_new_host_once(env, sshd, tmp_path):
    kh = tmp_path / "sub" / "kh_new"
    configure(env, sshd.client_key, known_hosts=kh)
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 0 and e["hostkey_added"] is True
    rc, e = ssh_test(env, f"127.0.0.1:{sshd.port}")
    assert rc == 0 and e["hostkey_added"] is False
    assert kh.read_text() == sshd.known_hosts_line()
    # and OpenSSH itself accepts what we wrote
    import subprocess
    r = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(kh)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "found" in r.stdout


def test_closed_port_fails_in_connect(env, sshd):
    configure(env, sshd.client_key)
    rc, e = ssh_test(env, f"127.0.0.1:{closed_port()}")
    assert rc == 1
    assert (e["stage"], e["error_type"]) == ("connect", "connect_refused")


def test_silent_listener_times_out_at_deadline(env, sshd):
    configure(env, sshd.client_key)
    silent = SilentListener()
    try:
        t0 = time.monotonic()
        rc, e = ssh_test(env, f"127.0.0.1:{silent.port}", "--timeout", "2")
        wall = time.monotonic() - t0
    finally:
        silent.close()
    assert rc == 1
    assert (e["stage"], e["error_type"]) == ("handshake", "timeout")
    assert 1800 <= e["duration_ms"] <= 2200, e
    assert wall < 2.2 + 1.0  # process start and exit on top of the deadline


def test_unresolvable_name_fails_in_resolve(env, sshd):
    configure(env, sshd.client_key)
    rc, e = ssh_test(env, "no-such-host.invalid")
    assert rc == 1
    assert (e["stage"], e["error_type"]) == ("resolve", "resolve_failed")


@pytest.mark.parametrize("args", [[], ["a", "b"], ["host:99999"], ["host", "--timeout", "x"],
                                  ["host", "--policy", "sometimes"], ["host", "--bogus"],
                                  ["host", "--key"], ["@host"]])
def test_bad_arguments_exit_2(env, args):
    env.write_config("")
    r = env.run("ssh-test", *args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_ssh_agent_authentication(env, sshd, tmp_path):
    """No key file: the identity comes from a real ssh-agent."""
    import subprocess

    from conftest import base_env

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.02)
        agent_env = base_env(SSH_AUTH_SOCK=str(sock))
        add = subprocess.run(["ssh-add", str(sshd.client_key)], env=agent_env,
                             capture_output=True, text=True)
        assert add.returncode == 0, add.stderr
        env.write_config(
            f"""[ssh]
user = root
use_agent = true
known_hosts = {env.dir / "known_hosts"}
host_key_policy = accept-new
timeout = 5s
""")
        r = env.run("ssh-test", f"127.0.0.1:{sshd.port}", env=agent_env)
        events = [e for e in parse_lines(r.stdout) if e.get("event") == "ssh_connection_test"]
        assert r.returncode == 0, r.stdout + r.stderr
        assert events[0]["stage"] == "exec" and events[0]["success"] is True
        # without the agent the same configuration has no identity at all
        no_agent = {k: v for k, v in base_env().items() if k != "SSH_AUTH_SOCK"}
        r = env.run("ssh-test", f"127.0.0.1:{sshd.port}", env=no_agent)
        events = [e for e in parse_lines(r.stdout) if e.get("event") == "ssh_connection_test"]
        assert r.returncode == 1 and events[0]["stage"] == "auth"
    finally:
        agent.terminate()
        agent.wait(timeout=10)


class PasswordSshd(Sshd):
    """An sshd that accepts only passwords: root's password is PASSWORD in a
    private copy of /etc/shadow bind-mounted over the real one inside a mount
    namespace of its own (the machine's accounts are never touched)."""

    PASSWORD = "fleet keeper password 7"

    def write_config(self):
        super().write_config()
        text = self.conf.read_text()
        text = text.replace("PubkeyAuthentication yes", "PubkeyAuthentication no")
        text = text.replace("PasswordAuthentication no", "PasswordAuthentication yes")
        self.conf.write_text(text)

    def start(self):
        import subprocess

        from sshd import SSHD, wait_accepting

        digest = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=self.PASSWORD,
                                capture_output=True, text=True, check=True).stdout.strip()
        shadow = self.dir / "shadow"
        lines = []
        for line in open("/etc/shadow"):
            parts = line.rstrip("\n").split(":")
            if parts[0] == "root":
                parts[1] = digest
            lines.append(":".join(parts))
        shadow.write_text("\n".join(lines) + "\n")
        shadow.chmod(0o600)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.write_config()
        script = f'mount --bind "{shadow}" /etc/shadow && exec "{SSHD}" -D -e -f "{self.conf}"'
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                      "sh", "-c", script],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        for a, p in self.endpoints:
            wait_accepting(a, p, proc=self.proc)
        return self


def test_password_file_authentication(env, tmp_path):
    sshd = PasswordSshd(tmp_path, name="pwsshd").start()
    try:
        good = tmp_path / "password"
        good.write_text(PasswordSshd.PASSWORD + "\n")
        bad = tmp_path / "wrong_password"
        bad.write_text("not the password\n")
        for pwfile, rc_expected in ((good, 0), (bad, 1)):
            env.write_config(
                f"""[ssh]
user = root
password_file = {pwfile}
known_hosts = {env.dir / "known_hosts"}
host_key_policy = accept-new
timeout = 5s
""")
            r = env.run("ssh-test", f"127.0.0.1:{sshd.port}")
            events = [e for e in parse_lines(r.stdout) if e.get("event") == "ssh_connection_test"]
            assert r.returncode == rc_expected, r.stdout + r.stderr
            assert events[0]["stage"] == ("exec" if rc_expected == 0 else "auth")
            # the password never reaches the output
            assert PasswordSshd.PASSWORD not in r.stdout + r.stderr
    finally:
        sshd.stop()


# ---- stage deadlines (issue 16): connect_timeout and handshake_timeout ----

def test_connect_deadline_names_connect_stage(env, sshd):
    """A port whose listen queue is full never completes the TCP connect: the
    attempt ends at connect_timeout, well before the whole timeout."""
    configure(env, sshd.client_key, timeout="10s", extra="connect_timeout = 1s\n")
    hung = FullBacklogListener()
    try:
        rc, e = ssh_test(env, f"127.0.0.1:{hung.port}")
    finally:
        hung.close()
    assert rc == 1
    assert (e["stage"], e["error_type"]) == ("connect", "connect_timeout"), e
    assert "connect_timeout" in e["error"], e
    assert 900 <= e["duration_ms"] <= 1500, e


def test_handshake_deadline_names_handshake_stage(env, sshd):
    """A listener that accepts and never speaks: the handshake deadline, not
    the connect one (the TCP connect succeeded) and not the whole one."""
    configure(env, sshd.client_key, timeout="10s",
              extra="connect_timeout = 1s\nhandshake_timeout = 1500ms\n")
    silent = SilentListener()
    try:
        rc, e = ssh_test(env, f"127.0.0.1:{silent.port}")
    finally:
        silent.close()
    assert rc == 1
    assert (e["stage"], e["error_type"]) == ("handshake", "timeout"), e
    assert "handshake_timeout" in e["error"], e
    assert 1400 <= e["duration_ms"] <= 2000, e


def test_stage_deadlines_are_cut_to_the_whole_timeout(env, sshd):
    """handshake_timeout above timeout: the whole deadline ends it, and says so."""
    configure(env, sshd.client_key, timeout="1s", extra="handshake_timeout = 30s\n")
    silent = SilentListener()
    try:
        rc, e = ssh_test(env, f"127.0.0.1:{silent.port}")
    finally:
        silent.close()
    assert (e["stage"], e["error_type"]) == ("handshake", "timeout"), e
    assert "(timeout)" in e["error"], e
    assert 900 <= e["duration_ms"] <= 1500, e


def test_bad_stage_deadline_is_a_config_error(env, sshd):
    configure(env, sshd.client_key, extra="handshake_timeout = soon\n")
    r = env.run("check-config")
    assert r.returncode != 0 and "handshake_timeout" in r.stderr, (r.stdout, r.stderr)


# ---- descriptors (issue 16): RLIMIT_NOFILE ----

def health_config(env, sshd, servers, concurrency):
    env.write_config(f"""[ssh]
user = root
key_file = {sshd.client_key}
known_hosts = {env.dir / 'known_hosts'}
host_key_policy = accept-new
timeout = 10s

[task.health_check]
concurrency = {concurrency}
check_timeout = 10s
failure_threshold = 1
""")
    r = env.run("once", "health_check")  # creates the schema; no servers yet
    assert r.returncode == 0, r.stderr
    con = env.connect()
    now = time.time()
    with con:
        con.executemany("INSERT INTO servers (handle, ip, port, ssh_user, status, created_at,"
                        " updated_at) VALUES (?, ?, ?, 'root', 'ready', ?, ?)",
                        [(f"srv-{i:03d}", *sshd.endpoints[i % len(sshd.endpoints)], now, now)
                         for i in range(servers)])
    con.close()


@pytest.fixture
def sshd4(tmp_path):
    s = Sshd(tmp_path, name="sshd4", addrs=("127.0.0.1", "127.0.0.2"), nports=2).start()
    yield s
    s.stop()


def test_many_checks_above_a_low_descriptor_limit(env, sshd4):
    """200 checks asked all at once under RLIMIT_NOFILE 64:64 (nothing to
    raise to): the loop clamps itself to the limit and every server is
    checked and healthy; none fails for a descriptor (EMFILE)."""
    health_config(env, sshd4, servers=200, concurrency=200)
    r = subprocess.run(["prlimit", "--nofile=64:64", BIN, "-c", str(env.conf), "once",
                        "health_check"], capture_output=True, text=True, cwd=env.dir,
                       env=base_env(), timeout=120)
    events = parse_lines(r.stdout)
    checks = [e for e in events if e.get("event") == "server_health_check"]
    done = [e for e in events if e.get("event") == "health_check_complete"]
    bad = [e for e in checks if e.get("status") != "healthy"]
    assert r.returncode == 0 and done, (r.returncode, r.stderr, r.stdout[-2000:])
    assert not bad, bad[:3]
    assert "Too many open files" not in r.stdout + r.stderr
    assert done[0]["healthy_count"] == 200, done[0]


def test_daemon_raises_descriptor_limit_and_children_get_the_old_one(env, tmp_path):
    """scheduler_started reports the raised soft limit (the hard limit); a
    command task still runs with the soft limit the daemon was started with."""
    out = tmp_path / "child_nofile"
    script = tmp_path / "lim.sh"
    script.write_text(f"ulimit -Sn > {out}.tmp && mv {out}.tmp {out}\n")
    env.write_config(f"[task.lim]\ntype = command\nschedule = @every 1s\n"
                     f"command = sh {script}\n")
    proc = subprocess.Popen(["prlimit", "--nofile=256:4096", BIN, "-c", str(env.conf), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=env.dir, env=base_env(), start_new_session=True)
    try:
        started = None
        end = time.monotonic() + 30
        while started is None and time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            if '"scheduler_started"' in line:
                started = json.loads(line)
        assert started is not None, proc.stderr.read() if proc.poll() is not None else ""
        assert started["open_files_limit"] == 4096, started
        while not out.exists():
            assert time.monotonic() < end, "the command task never ran"
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        assert out.read_text().strip() == "256"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
