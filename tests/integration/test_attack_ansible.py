"""Issue 15, break 2: ansible-playbook checks host keys against the daemon's
known_hosts file, whatever the working directory, and never offers the SSH
password to a host whose key does not match.

ansible-playbook runs in a private temporary directory, so every path
fleetkeeper hands it must be absolute. The configurations here use the
shipped default, a relative state directory (./var, so the known_hosts file
is ./var/known_hosts), or an explicitly relative known_hosts; the commands run
in the test's directory, as the daemon does. The mismatch tests run a sshd
that accepts passwords and logs at DEBUG1: every authentication request the
client makes is in its log (fk_ansible.py, sshd.py).
"""
import re

import pytest

from conftest import parse_lines, wait_until
from fk_ansible import ANSIBLE, AnsibleHost, needs_ansible
from sshd import keygen

pytestmark = needs_ansible

PASSWORD = "pw-Hk51-never-offered"


def complete_event(stdout):
    (done,) = [e for e in parse_lines(stdout) if e["event"] == "ansible_playbook_complete"]
    return done


def ssh_args_of_the_run(host):
    """The ANSIBLE_SSH_ARGS the run was given (its `command` artifact)."""
    (art,) = list((host.env.state / "artifacts").iterdir())
    (line,) = [l for l in (art / "command").read_text().splitlines()
               if l.startswith("ANSIBLE_SSH_ARGS=")]
    return line


def known_hosts_of(ssh_args):
    m = re.search(r"UserKnownHostsFile=(\S+)", ssh_args)
    assert m, ssh_args
    return m.group(1)


def test_strict_with_relative_paths_finds_the_key(tmp_path):
    """known_hosts = kh/known_hosts (relative) holding the right key, a
    relative key_file and ansible_playbook = bin/ansible-playbook: with
    host_key_policy = strict the playbook runs, and ssh was told the
    absolute path of that very known_hosts file."""
    (tmp_path / "kh").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ansible-playbook").symlink_to(ANSIBLE)
    h = AnsibleHost(tmp_path, policy="strict", known_hosts="kh/known_hosts",
                    key_file="sshd/client_ed25519",
                    extra_tasks="ansible_playbook = bin/ansible-playbook")
    try:
        (tmp_path / "kh" / "known_hosts").write_text(h.sshd.known_hosts_line())
        h.add_server("vps-1")
        r = h.env.run("ansible", "health_check", "--server", "vps-1")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        kh = known_hosts_of(ssh_args_of_the_run(h))
        assert kh.startswith("/") and kh == str(tmp_path / "kh" / "known_hosts")
        done = complete_event(r.stdout)
        assert (done["exit_code"], done["ok"], done["unreachable"]) == (0, 3, 0), done
    finally:
        h.close()


def test_accept_new_writes_the_daemons_known_hosts(tmp_path):
    """The default known_hosts of a relative state directory (./var): with
    accept-new the key is learnt into ./var/known_hosts of the daemon's
    directory — the file ssh-test then checks strictly — not next to
    ansible's private directory."""
    h = AnsibleHost(tmp_path, policy="accept-new", known_hosts="", state_dir="./var")
    try:
        kh = h.env.state / "known_hosts"
        assert not kh.exists()
        h.add_server("vps-1")
        r = h.env.run("ansible", "health_check", "--server", "vps-1")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        assert known_hosts_of(ssh_args_of_the_run(h)) == str(kh)
        kind, key = h.sshd.host_pub()
        assert kh.exists() and key in kh.read_text(), "the host key was not learnt"
        r = h.env.run("ssh-test", f"root@127.0.0.1:{h.sshd.port}", "--key",
                      str(h.sshd.client_key), "--policy", "strict")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        h.close()


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_mismatching_key_fails_and_no_password_is_offered(tmp_path, policy):
    """./var/known_hosts holds another key for the host and only password
    authentication is configured: the run fails on the host key, says so,
    and the sshd log shows no password authentication request at all."""
    h = AnsibleHost(tmp_path, policy=policy, known_hosts="", state_dir="./var",
                    password=PASSWORD, key_file=False,
                    sshd={"password_auth": True, "log_level": "DEBUG1"})
    try:
        other = keygen(tmp_path / "impostor_ed25519")
        kind, key = open(str(other) + ".pub").read().split()[:2]
        kh = h.env.state / "known_hosts"
        kh.write_text(f"[127.0.0.1]:{h.sshd.port} {kind} {key}\n")
        h.add_server("vps-1")
        r = h.env.run("ansible", "health_check", "--server", "vps-1")
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr
        # ssh reached sshd (key exchange: the readiness probe of sshd.py
        # never says a word), and its connection is over
        wait_until(lambda: "remote software version OpenSSH" in h.sshd.log(),
                   what="sshd to log the client's version")
        wait_until(lambda: re.search(r"(Connection closed|Disconnected|Connection reset).*"
                                     r"\[preauth\]", h.sshd.log()),
                   what="sshd to log the end of the client's connection")
        log = h.sshd.log()
        assert "method password" not in log, log
        assert "Failed password" not in log and "Accepted password" not in log, log
        done = complete_event(r.stdout)
        assert done["error_type"] == "hostkey_mismatch", done
        assert "host key mismatch" in done["error"] and str(kh) in done["error"], done
        assert PASSWORD not in r.stdout + r.stderr
        # the known key was left as it was
        assert kh.read_text() == f"[127.0.0.1]:{h.sshd.port} {kind} {key}\n"
    finally:
        h.close()


def test_known_hosts_path_ssh_would_split_is_refused(tmp_path):
    """ssh splits UserKnownHostsFile at blanks (and expands % and $): such a
    path would name other files, so the run fails before ansible starts."""
    (tmp_path / "kh dir").mkdir()
    h = AnsibleHost(tmp_path, policy="accept-new", known_hosts="kh dir/known_hosts")
    try:
        h.add_server("vps-1")
        r = h.env.run("ansible", "health_check", "--server", "vps-1")
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr
        done = complete_event(r.stdout)
        assert done["error_type"] == "bad_path", done
        assert str(tmp_path / "kh dir" / "known_hosts") in done["error"], done
        assert not (h.env.state / "artifacts").exists()
    finally:
        h.close()
