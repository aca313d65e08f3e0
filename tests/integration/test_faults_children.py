"""No process of a run survives its daemon (issue 8), and a state directory
that turns read-only.

kill -9 of the daemon in the middle of a command task whose shell left
background, setsid'd and double-forked descendants, and in the middle of an
Ansible run (ansible-playbook, its worker, its ssh to the loopback sshd):
every local process of the run is gone within the deadline (children are
started through a supervisor that is their subreaper and kills them all when
the daemon's socket end closes, src/proc_supervisor.c); the store passes
PRAGMA integrity_check, the run is `interrupted` at the next start and the
missed fire of the persistent task is caught up once.
"""
import os
import re
import time
from pathlib import Path

import pytest

from conftest import DEADLINE, pid_alive, wait_until
from faults import integrity_check, runs_go_ahead_unrecorded, spell_events_stored


def descendants(root):
    """Pids of every live descendant of root, from /proc (ppid links)."""
    children = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_all_gone(pids, what):
    wait_until(lambda: not [p for p in pids if pid_alive(p)], what=what)


def backdate_fire(env, task):
    """Pretend the last fire of task was two days ago: a fire was missed."""
    con = env.connect()
    two_days_ago = time.time() - 2 * 86400
    con.execute("INSERT INTO task_state(task, last_fire_at, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(task) DO UPDATE SET last_fire_at = excluded.last_fire_at,"
                " updated_at = excluded.updated_at",
                (task, two_days_ago, two_days_ago))
    con.commit()
    con.close()


def restart_and_check_recovery(env, daemons, task, caught_up="success"):
    """Next start: the run is interrupted and the missed fire caught up once
    (a provision run with no server due ends `skipped`)."""
    assert integrity_check(env) == [("ok",)]
    backdate_fire(env, task)
    d2 = daemons(env)
    assert d2.wait_for("runs_interrupted")[0]["count"] == 1
    d2.wait_for("task_catchup")
    env.wait_sql("SELECT status FROM task_runs WHERE task=? AND trigger='catchup'",
                 lambda r: r == [(caught_up,)], task)
    d2.stop()
    assert [e["task"] for e in d2.named("task_catchup")] == [task]
    rows = env.sql("SELECT status, trigger FROM task_runs WHERE task=? ORDER BY id", task)
    assert rows == [("interrupted", "manual"), (caught_up, "catchup")], rows
    assert integrity_check(env) == [("ok",)]


def test_kill9_command_with_background_descendants_none_survive(env, daemons, tmp_path):
    pidfile = tmp_path / "pids"
    done = tmp_path / "done"  # the caught-up run after the restart ends at once
    # a background child, a setsid'd one (own session) and a double-forked
    # one (orphaned at once), then the shell itself waits
    script = tmp_path / "run.sh"
    script.write_text(f"""test -e {done} && exit 0
sleep 1001 & echo $! >> {pidfile}
setsid sh -c 'echo $$ >> {pidfile}; exec sleep 1002' &
sh -c 'sleep 1003 & echo $! >> {pidfile}'
echo $$ >> {pidfile}
sleep 1004
""")
    env.write_config(f"[task.long]\ntype = command\nschedule = 0 3 * * *\npersistent = true\n"
                     f"command = sh {script}\n")
    d = daemons(env)
    d.wait_for("scheduler_started")
    assert env.run("trigger", "long").returncode == 0
    env.wait_sql("SELECT status FROM task_runs WHERE task='long'", lambda r: r == [("running",)])
    wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 4,
               what="4 pids written")
    pids = [int(p) for p in pidfile.read_text().split()]
    tree = descendants(d.proc.pid)
    assert set(pids) <= set(tree), (pids, tree)
    d.proc.kill()  # SIGKILL to the daemon only, not its process group
    d.proc.wait(timeout=DEADLINE)
    wait_all_gone(tree, f"every process of the run gone after kill -9: {tree}")
    done.touch()
    restart_and_check_recovery(env, daemons, "long")


# ---- an Ansible run ----

try:
    from fk_ansible import AnsibleHost, ansible_procs, needs_ansible, unique_sleep
except ImportError:  # pragma: no cover
    needs_ansible = pytest.mark.skip(reason="fk_ansible unavailable")


@needs_ansible
def test_kill9_during_ansible_run_no_local_process_survives(tmp_path, daemons):
    books = tmp_path / "books"
    books.mkdir()
    # provision runs provision_access then provision_software; the first one
    # hangs on the loopback sshd, so ansible-playbook, its worker and ssh
    # are all alive when the daemon is killed
    (books / "provision_access.yml").write_text(f"""---
- hosts: all
  gather_facts: false
  tasks:
    - name: hang on the host
      ansible.builtin.command: {unique_sleep(9)}
""")
    (books / "provision_software.yml").write_text("---\n- hosts: all\n  gather_facts: false\n"
                                                   "  tasks: []\n")
    h = AnsibleHost(tmp_path)
    try:
        conf = h.env.conf.read_text()
        conf = re.sub(r"playbook_dir = .*", f"playbook_dir = {books}", conf)
        conf = conf.replace("[task.provision]\ntype = provision\n",
                            "[task.provision]\ntype = provision\nschedule = 0 3 * * *\n"
                            "persistent = true\n")
        h.env.conf.write_text(conf)
        h.add_server("vps-1", status="pending_setup")
        d = daemons(h.env)
        d.wait_for("scheduler_started")
        assert h.env.run("trigger", "provision").returncode == 0
        # the remote command runs (under the sshd, not ours): the run is mid-flight
        wait_until(lambda: ansible_procs(unique_sleep(9)), deadline=DEADLINE * 2,
                   what="the playbook's remote command")
        tree = descendants(d.proc.pid)
        names = [cmdline(p) for p in tree]
        assert any("ansible-playbook" in c for c in names), names
        assert any(c.startswith("ssh ") for c in names), names
        d.proc.kill()
        d.proc.wait(timeout=DEADLINE)
        wait_all_gone(tree, f"ansible-playbook, workers and ssh gone after kill -9: {names}")
        assert ansible_procs(h.private_marker) == []
        (books / "provision_access.yml").write_text(  # a re-provisioning ends at once
            "---\n- hosts: all\n  gather_facts: false\n  tasks: []\n")
        restart_and_check_recovery(h.env, daemons, "provision", caught_up="skipped")
    finally:
        for pid, _ in ansible_procs(unique_sleep(9)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        h.close()


# ---- a read-only state directory ----

# `mount -o remount,ro` of a tmpfs fails with EBUSY while SQLite holds files
# open for writing (the kernel refuses to make a superblock or a mount
# read-only under open writers); what a daemon sees when its filesystem does
# turn read-only (ext4 errors=remount-ro) is EROFS from every write on the
# fds it holds. This shim, preloaded into the daemon, does exactly that for
# files under FK_RO_DIR while the file FK_RO_FLAG exists.
RO_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int ro_path(const char *path)
{
	const char *dir = getenv("FK_RO_DIR"), *flag = getenv("FK_RO_FLAG");
	if (!dir || !flag || access(flag, F_OK) != 0)
		return 0;
	return path && strncmp(path, dir, strlen(dir)) == 0;
}

static int ro_fd(int fd)
{
	char link[64], path[4096];
	const char *flag = getenv("FK_RO_FLAG");
	if (!flag || access(flag, F_OK) != 0)
		return 0;
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n <= 0)
		return 0;
	path[n] = 0;
	return ro_path(path);
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))
#define RO_FD(fd) do { if (ro_fd(fd)) { errno = EROFS; return -1; } } while (0)

ssize_t write(int fd, const void *b, size_t n) { RO_FD(fd); return NEXT(write)(fd, b, n); }
ssize_t pwrite(int fd, const void *b, size_t n, off_t o) { RO_FD(fd); return NEXT(pwrite)(fd, b, n, o); }
ssize_t pwrite64(int fd, const void *b, size_t n, off_t o) { RO_FD(fd); return NEXT(pwrite64)(fd, b, n, o); }
ssize_t writev(int fd, const struct iovec *v, int c) { RO_FD(fd); return NEXT(writev)(fd, v, c); }
int ftruncate(int fd, off_t l) { RO_FD(fd); return NEXT(ftruncate)(fd, l); }
int ftruncate64(int fd, off_t l) { RO_FD(fd); return NEXT(ftruncate64)(fd, l); }
int fsync(int fd) { RO_FD(fd); return NEXT(fsync)(fd); }
int fdatasync(int fd) { RO_FD(fd); return NEXT(fdatasync)(fd); }
int unlink(const char *p) { if (ro_path(p)) { errno = EROFS; return -1; } return NEXT(unlink)(p); }

static int ro_open(const char *p, int flags)
{
	return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) && ro_path(p);
}
#define OPEN_BODY(call) \
	mode_t m = 0; if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); \
	m = va_arg(ap, mode_t); va_end(ap); } \
	if (ro_open(p, flags)) { errno = EROFS; return -1; } return call;
int open(const char *p, int flags, ...) { OPEN_BODY(NEXT(open)(p, flags, m)) }
int open64(const char *p, int flags, ...) { OPEN_BODY(NEXT(open64)(p, flags, m)) }
"""


@pytest.fixture
def ro_shim(tmp_path):
    import shutil
    import subprocess
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the read-only shim")
    src, so = tmp_path / "ro_shim.c", tmp_path / "ro_shim.so"
    src.write_text(RO_SHIM)
    r = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(so), str(src), "-ldl"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return so


@pytest.mark.sqlite_only("the state directory's file turns read-only")
def test_state_dir_read_only_reports_keeps_scheduling_and_resumes(env, daemons, ro_shim, tmp_path):
    flag = tmp_path / "read-only"
    env.write_config("[task.t]\ntype = command\nschedule = @every 1s\ncommand = echo tick\n")
    preload = " ".join(p for p in (os.environ.get("LD_PRELOAD"), str(ro_shim)) if p)
    d = daemons(env, extra_env={
        "LD_PRELOAD": preload, "FK_RO_DIR": str(env.state) + "/", "FK_RO_FLAG": str(flag),
        # an ASan build must accept a preloaded library listed before its runtime
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"})
    d.wait_for("t_complete")
    env.wait_sql("SELECT count(*) FROM task_runs WHERE task='t' AND status='success'",
                 lambda r: r[0][0] >= 1)
    before = env.sql("SELECT id, status FROM task_runs ORDER BY id")
    events_before = env.sql("SELECT id, event FROM events ORDER BY id")
    flag.touch()  # the state directory turns read-only
    failed = d.wait_for("store_write_failed")[0]
    # SQLite 3.40 reports the EROFS of a WAL commit as a plain "disk I/O
    # error" (no OS errno attached), hence error_type "error"
    assert failed["level"] == "error" and failed["error_type"] in ("readonly", "error"), failed
    assert failed["error"].startswith("commit events:"), failed
    # the scheduler keeps firing and the runs go ahead without their rows
    unrecorded = runs_go_ahead_unrecorded(d)
    assert d.proc.poll() is None
    flag.unlink()  # writable again
    n = len(d.named("t_complete"))
    d.wait_for("t_complete", count=n + 2)  # runs again, and they are stored
    env.wait_sql("SELECT count(*) FROM task_runs WHERE task='t' AND status='success'"
                 " AND id > ?", lambda r: r[0][0] >= 2, before[-1][0])
    # the events of the read-only spell were kept in the queue and stored
    spell_events_stored(env, unrecorded)
    d.stop()
    # nothing stored before the read-only spell was lost
    after = dict(env.sql("SELECT id, status FROM task_runs"))
    assert all(after.get(i) == st for i, st in before if st != "running"), (before, after)
    assert all(i in after for i, _ in before)
    assert env.sql("SELECT id, event FROM events WHERE id <= ? ORDER BY id",
                   events_before[-1][0]) == events_before
    assert not d.named("events_dropped")
    assert integrity_check(env) == [("ok",)]
