"""Shared setup for the Ansible tests (test_ansible.py, test_recover.py).

AnsibleHost(tmp) starts the loopback sshd of sshd.py, writes a fleetkeeper
configuration whose [ssh] points at the sshd's client key and whose
[task.provision] points the playbooks at the repository's playbooks/ with
deploy_root in the test's temporary directory, and a vars_file that keeps
the provisioning playbooks inside that directory (no packages installed, a
copy of sshd_config hardened, a private authorized_keys). Servers are added
straight into the store. Services' repositories are local bare git repos.

Options for the attack tests: known_hosts (a path written as given, may be
relative; "" leaves the key out, so the default <state_dir>/known_hosts
applies), policy (host_key_policy), key_file=False (no client key: with a
password, password-only authentication) or a path written as given,
state_dir (written as given, e.g.
"./var": the commands run in tmp, so it is still env.state) and sshd (keyword
arguments for Sshd, e.g. password_auth, log_level).
"""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, Env, DEADLINE
from sshd import Sshd, have_sshd, free_port

ANSIBLE = shutil.which("ansible-playbook")

needs_ansible = pytest.mark.skipif(not (ANSIBLE and have_sshd()),
                                   reason="needs ansible-playbook, sshd and root")


class AnsibleHost:
    def __init__(self, tmp: Path, extra_vars=None, playbook_timeout="120s", password=None,
                 extra_tasks="", known_hosts=None, policy="accept-new", key_file=True,
                 state_dir=None, sshd=None):
        self.tmp = tmp
        self.env = Env(tmp)
        # ansible runs' private directories go here, so that a test sees its
        # own (other tests may run ansible on the same machine)
        self.private_tmp = tmp / "tmp"
        self.private_tmp.mkdir()
        self.env.extra_env["TMPDIR"] = str(self.private_tmp)
        self.private_marker = f"{self.private_tmp}/fleetkeeper-ansible-"
        self.sshd = Sshd(tmp, **(sshd or {})).start()
        self.deploy = tmp / "deploy"
        self.deploy.mkdir()
        shutil.copy(self.sshd.conf, tmp / "sshd_config_copy")
        vars_ = {"install_packages": False, "sshd_reload": False,
                 "sshd_config_path": str(tmp / "sshd_config_copy"),
                 "authorized_keys_path": str(tmp / "authorized_keys_provisioned")}
        vars_.update(extra_vars or {})
        self.vars_file = tmp / "vars.json"
        self.vars_file.write_text(json.dumps(vars_))
        ssh_extra = ""
        if password is not None:
            pw = tmp / "password"
            pw.write_text(password + "\n")
            pw.chmod(0o600)
            ssh_extra = f"password_file = {pw}\n"
        if known_hosts is None:
            known_hosts = tmp / "known_hosts"
        if key_file:
            ssh_extra += f"key_file = {self.sshd.client_key if key_file is True else key_file}\n"
        if known_hosts != "":
            ssh_extra += f"known_hosts = {known_hosts}\n"
        self.env.write_config(f"""[ssh]
user = root
host_key_policy = {policy}
timeout = 10s
{ssh_extra}
[task.provision]
type = provision
playbook_dir = {ROOT / 'playbooks'}
deploy_root = {self.deploy}
vars_file = {self.vars_file}
playbook_timeout = {playbook_timeout}
kill_grace = 2s
{extra_tasks}
""")
        if state_dir is not None:
            conf = self.env.conf.read_text()
            self.env.conf.write_text(conf.replace(f"state_dir = {self.env.state}\n",
                                                  f"state_dir = {state_dir}\n", 1))
        r = self.env.run("services", "list")  # creates the store
        assert r.returncode == 0, r.stderr

    def add_server(self, handle, status="ready", managed=1):
        con = self.env.connect()
        now = time.time()
        con.execute("INSERT INTO servers(handle, ip, port, ssh_user, status, is_managed,"
                    " created_at, updated_at) VALUES (?, '127.0.0.1', ?, 'root', ?, ?, ?, ?)",
                    (handle, self.sshd.port, status, managed, now, now))
        con.commit()
        con.close()

    def exec_sql(self, query, *params):
        self.env.exec_sql(query, *params)

    def open_incident(self, handle, previous="in_use"):
        """Server `handle` in error (previous status `previous`, may be None)
        with a detected server_unreachable incident."""
        now = time.time()
        self.exec_sql("UPDATE servers SET status = 'error', previous_status = ? WHERE handle = ?",
                      previous, handle)
        self.exec_sql("INSERT INTO incidents(server_id, type, status, detected_at, updated_at)"
                      " SELECT id, 'server_unreachable', 'detected', ?, ? FROM servers"
                      " WHERE handle = ?", now, now, handle)

    def make_repo(self, name, port):
        """A bare repository with a service that serves HTTP on port."""
        work = self.tmp / "src" / name
        work.mkdir(parents=True)
        (work / "index.html").write_text(f"{name}\n")
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
        subprocess.run(git + ["init", "-q", str(work)], check=True)
        subprocess.run(git + ["-C", str(work), "add", "."], check=True)
        subprocess.run(git + ["-C", str(work), "commit", "-q", "-m", "init"], check=True)
        bare = self.tmp / "repos" / f"{name}.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
        return f"file://{bare}"

    def kill_services(self):
        run = self.deploy / ".run"
        for pidfile in run.glob("*.pid") if run.exists() else []:
            try:
                os.killpg(int(pidfile.read_text().strip()), signal.SIGKILL)
            except (ProcessLookupError, ValueError, PermissionError):
                pass

    def close(self):
        self.kill_services()
        self.sshd.stop()


def unique_sleep(k):
    """A `sleep N` command line no other pytest runs: the other backend's
    suite may run the same test at the same time (scripts/test.sh), and the
    tests look for (and kill) their sleeps by command line."""
    return f"sleep {10000000 + os.getpid() * 10 + k}"


def ansible_procs(marker, where=("cmdline",)):
    """Pids whose command line (or another /proc/PID file of where, e.g.
    environ) contains marker, excluding this process."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        for name in where:
            try:
                text = (d / name).read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in text:
                out.append((int(d.name), text))
                break
    return out


__all__ = ["AnsibleHost", "needs_ansible", "ansible_procs", "free_port", "DEADLINE"]
