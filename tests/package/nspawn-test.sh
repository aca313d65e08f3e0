#!/usr/bin/env bash
# The package under a real systemd (issue 19): a Debian 12 tree made by
# debootstrap, booted with `systemd-nspawn -b`; inside it the package is
# installed with apt and a probe unit checks the service: active (running)
# after READY=1, `systemctl reload` (SIGHUP: config_reloaded, same PID), the
# watchdog (SIGSTOP: killed and restarted), its JSON lines in the journal
# with SYSLOG_IDENTIFIER=fleetkeeper, an operator in the fleetkeeper group
# (status, trigger, runs) and someone else refused, Ansible run by the
# daemon under the unit's sandbox (`fleetkeeper ansible` over SSH to the
# container's sshd and with connection local, a command task running
# `ansible -m ping`), a clean stop. Root only.
#   tests/package/nspawn-test.sh [DEB]     (default build-pkg/fleetkeeper_*.deb)
# FK_NSPAWN_BASE: the debootstrapped tree, made once and reused (default
#   /var/cache/fleetkeeper-nspawn/bookworm); FK_NSPAWN_MIRROR: the mirror.
# The test boots a copy of it; the base stays clean.
# The probe shortens WatchdogSec to 5s with a drop-in, so the watchdog
# check takes seconds, not the unit's 30.
# Exit 0: every check passed; 1: a check failed; 77: systemd cannot be
# booted here (not root, no debootstrap/systemd-nspawn, the mirror is not
# reachable, the container did not boot): the reason is printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

deb=$(realpath "${1:-$(ls build-pkg/fleetkeeper_*_*.deb | grep -v dbgsym | head -n 1)}")
base=${FK_NSPAWN_BASE:-/var/cache/fleetkeeper-nspawn/bookworm}
mirror=${FK_NSPAWN_MIRROR:-http://deb.debian.org/debian}
t0=$(date +%s)

cannot() { echo "nspawn-test: cannot boot systemd here: $*" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || cannot "needs root"
for t in debootstrap systemd-nspawn; do
	command -v "$t" >/dev/null || cannot "$t missing (scripts/setup-deps.sh package)"
done

# What the package needs, preinstalled in the base so that installing the
# .deb in the container needs no network. Then, for the Ansible checks,
# with apt in the tree (debootstrap's --include cannot resolve
# python3-cryptography's virtual dependencies): ansible (the package
# Recommends it; the runner's callback ansible.posix.jsonl is in ansible,
# not in ansible-core) and an sshd for a server at 127.0.0.1.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | paste -sd, -)
extras=ansible,openssh-server
if [ ! -x "$base/lib/systemd/systemd" ]; then
	echo "nspawn-test: debootstrap bookworm into $base"
	mkdir -p "$(dirname "$base")"
	debootstrap --variant=minbase --include="systemd,systemd-sysv,dbus,$deps" \
		bookworm "$base.tmp" "$mirror" >/tmp/fk-debootstrap.log 2>&1 || {
		tail -n 20 /tmp/fk-debootstrap.log >&2
		rm -rf "$base.tmp"
		cannot "debootstrap from $mirror failed (log above, /tmp/fk-debootstrap.log)"
	}
	mv "$base.tmp" "$base"
	echo "nspawn-test: base ready in $(($(date +%s) - t0)) s"
fi
# Also into a base made before the Ansible checks. Into a copy, then
# swapped in: a failed install leaves the base as it was.
if [ ! -x "$base/usr/bin/ansible-playbook" ] || [ ! -x "$base/usr/sbin/sshd" ]; then
	echo "nspawn-test: adding $extras to $base"
	rm -rf "$base.tmp" && cp -a "$base" "$base.tmp"
	systemd-nspawn -q -D "$base.tmp" --register=no --keep-unit sh -c \
		"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends ${extras//,/ } && apt-get clean && rm -rf /var/lib/apt/lists/*" \
		>/tmp/fk-nspawn-extras.log 2>&1 || {
		tail -n 20 /tmp/fk-nspawn-extras.log >&2
		rm -rf "$base.tmp"
		cannot "apt-get install $extras in the base failed (log above, /tmp/fk-nspawn-extras.log)"
	}
	mv "$base" "$base.old" && mv "$base.tmp" "$base" && rm -rf "$base.old"
	echo "nspawn-test: base ready in $(($(date +%s) - t0)) s"
fi

root=$(mktemp -d /var/tmp/fleetkeeper-nspawn.XXXXXX)
trap 'rm -rf "$root"' EXIT
# Ansible's collections (32,000 of the tree's 47,000 files, 500 of its 770
# MB) are not copied: the container sees the base's, read-only.
coll=usr/lib/python3/dist-packages/ansible_collections
tar -C "$base" --xattrs --xattrs-include='*' --acls --exclude="./$coll" -cf - . |
	tar -C "$root" --xattrs --xattrs-include='*' --acls -xpf -
mkdir -p "$root/$coll"
cp "$deb" "$root/root/fleetkeeper.deb"
echo "nspawn-test: tree copied ($(($(date +%s) - t0)) s)"

nspawn=(systemd-nspawn -q -D "$root" --register=no --keep-unit --bind-ro="$base/$coll:/$coll")
# Recommends (ansible) are not needed for the service checks.
"${nspawn[@]}" apt-get install -y -q --no-install-recommends /root/fleetkeeper.deb \
	>/tmp/fk-nspawn-install.log 2>&1 || {
	tail -n 20 /tmp/fk-nspawn-install.log >&2
	exit 1
}
echo "nspawn-test: package installed in the container ($(($(date +%s) - t0)) s)"

cat >"$root/root/probe.sh" <<'PROBE'
#!/bin/bash
# Runs inside the booted container (fk-probe.service); writes /root/probe.out.
exec >/root/probe.out 2>&1
failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
	local until=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$until" ] || return 1
		sleep 0.2
	done
}
journal() { journalctl -b -o cat SYSLOG_IDENTIFIER=fleetkeeper --no-pager; }
state() { systemctl show -P ActiveState fleetkeeper; }
sub() { systemctl show -P SubState fleetkeeper; }
pid() { systemctl show -P MainPID fleetkeeper; }

mkdir -p /etc/systemd/system/fleetkeeper.service.d
printf '[Service]\nWatchdogSec=5s\nRestartSec=1s\n' >/etc/systemd/system/fleetkeeper.service.d/test.conf
systemctl daemon-reload

systemctl enable --now fleetkeeper && ok "systemctl enable --now fleetkeeper" || fail "enable --now"
if [ "$(state)/$(sub)" = active/running ]; then ok "active (running) once start returned (Type=notify: after READY=1)"; else fail "state $(state)/$(sub)"; fi
systemctl status fleetkeeper --no-pager | head -n 3
wait_for 20 bash -c 'journalctl -b -o cat SYSLOG_IDENTIFIER=fleetkeeper | grep -q "\"event\": *\"hello_complete\""' \
	&& ok "journal: hello_complete under SYSLOG_IDENTIFIER=fleetkeeper" || fail "no hello_complete in the journal"
first=$(journal | head -n 1)
if [[ $first == '{"timestamp": '*'}' ]]; then ok "journal lines are JSON objects"; else fail "journal: $first"; fi
systemd-analyze security fleetkeeper --no-pager | tail -n 1

# an operator in the fleetkeeper group, and someone who is not
useradd -M -G fleetkeeper -s /bin/sh fk-operator
useradd -M -s /bin/sh fk-other
op() { runuser -u "$1" -- fleetkeeper "${@:2}"; }
out=$(cd / && op fk-operator status 2>&1) && [[ $out == *"daemon: running"* ]] \
	&& ok "status as fk-operator (group fleetkeeper) through the socket" || fail "status as fk-operator: $out"
out=$(cd / && op fk-operator trigger hello 2>&1) && ok "trigger hello as fk-operator: $out" || fail "trigger as fk-operator: $out"
wait_for 20 bash -c 'cd / && runuser -u fk-operator -- fleetkeeper runs | grep -q manual' \
	&& ok "runs as fk-operator shows the manual run" || fail "runs as fk-operator: no manual run"
out=$(cd / && op fk-other status 2>&1) && fail "status as fk-other answered: $out" || {
	[[ $out == *"members of group fleetkeeper"* ]] && ok "status as fk-other refused: $(head -n 1 <<<"$out")" \
		|| fail "status as fk-other: $out"
}

p1=$(pid)
if systemctl reload fleetkeeper; then
	ok "systemctl reload"
else
	fail "systemctl reload"
	journalctl -b -u fleetkeeper --no-pager | grep -v '^{' | tail -n 8
fi
wait_for 10 bash -c 'journalctl -b -o cat SYSLOG_IDENTIFIER=fleetkeeper | grep -q "\"event\": *\"config_reloaded\""' \
	&& ok "journal: config_reloaded" || fail "no config_reloaded after reload"
[ "$(pid)" = "$p1" ] && [ "$(state)" = active ] && ok "same PID $p1 after reload" || fail "PID $(pid) after reload, was $p1"

kill -STOP "$p1"
if wait_for 30 bash -c '[ "$(systemctl show -P MainPID fleetkeeper)" != "'"$p1"'" ] && [ "$(systemctl show -P SubState fleetkeeper)" = running ]'; then
	ok "SIGSTOP: the watchdog killed PID $p1, restarted as $(pid) (NRestarts=$(systemctl show -P NRestarts fleetkeeper))"
else
	fail "no watchdog restart: $(state)/$(sub), PID $(pid)"
fi
journalctl -b -u fleetkeeper --no-pager | grep -i "watchdog" | head -n 2

# Ansible under the unit's sandbox, run by the daemon: (1) `fleetkeeper
# ansible` (the runner, through the control socket) with the shipped
# health_check playbook against a server row at 127.0.0.1, over SSH to the
# container's sshd; (2) the same runner with connection local, so the
# modules themselves run in the sandbox; (3) a command task running
# `ansible -c local ... -m ping`. Checked on the daemon's events in the
# journal and the runs in the store.
# has EVENT [KEY=VALUE...]: the daemon logged EVENT with those fields
has() {
	journal | python3 -c '
import json, sys
want = dict(a.split("=", 1) for a in sys.argv[2:])
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == sys.argv[1] and all(str(e.get(k)) == v for k, v in want.items()):
        sys.exit(0)
sys.exit(1)' "$@"
}
show() { journal | grep -E "\"event\": *\"($1)\"" | tail -n "${2:-4}"; }
# why the last runner run failed: the tail of its stderr artifact
why() { tail -n 5 "$(ls -d /var/lib/fleetkeeper/artifacts/*/ | tail -n 1)stderr" 2>&1; }
t_ans=$(date +%s)
systemctl start ssh
mkdir -p /root/.ssh /srv/fleetkeeper /usr/local/share/fk-probe
mkdir -m 1777 /usr/local/share/fk-probe/rw
ssh-keygen -q -t ed25519 -N '' -f /etc/fleetkeeper/secrets/id_ed25519
chown fleetkeeper:root /etc/fleetkeeper/secrets/id_ed25519 && chmod 0400 /etc/fleetkeeper/secrets/id_ed25519
cat /etc/fleetkeeper/secrets/id_ed25519.pub >/root/.ssh/authorized_keys
sed -i 's|^; key_file = .*|key_file = /etc/fleetkeeper/secrets/id_ed25519|' /etc/fleetkeeper/fleetkeeper.conf
cat >>/etc/fleetkeeper/fleetkeeper.conf <<'CONF'

[task.ansible_ping]
type = command
command = ansible -c local -i localhost, localhost -m ping -o && grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status
timeout = 2m
CONF
cat >/usr/local/share/fk-probe/local.yml <<'YML'
- name: Modules under the sandbox
  hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.ping:
    - ansible.builtin.command: id -un
      register: who
      changed_when: false
    - ansible.builtin.assert:
        that: who.stdout == "fleetkeeper"
    - ansible.builtin.copy:
        content: "written by a module\n"
        dest: /var/lib/fleetkeeper/fk-probe-local
        mode: "0640"
    - name: ProtectSystem=strict holds (the directory is 1777)
      ansible.builtin.file:
        path: /usr/local/share/fk-probe/rw/written
        state: touch
      register: ro
      failed_when: ro is succeeded or "Read-only file system" not in ro.msg
YML
runuser -u fleetkeeper -- python3 -c '
import sqlite3, time
c = sqlite3.connect("/var/lib/fleetkeeper/state.db", timeout=10)
t = time.time()
c.execute("INSERT INTO servers(handle, ip, port, ssh_user, status, is_managed, created_at,"
          " updated_at) VALUES (?, ?, 22, ?, ?, 0, ?, ?)", ("local-sshd", "127.0.0.1", "root", "ready", t, t))
c.commit()' && ok "server local-sshd (127.0.0.1:22) in the store" || fail "cannot add the server row"
fleetkeeper check-config >/dev/null && systemctl reload fleetkeeper \
	&& wait_for 10 has config_reloaded added=1 && ok "config with [ssh] key_file and task ansible_ping reloaded" \
	|| fail "reload with the Ansible configuration: $(show 'config_reload.*' 2)"
wait_for 10 bash -c '</dev/tcp/127.0.0.1/22' || fail "sshd does not listen on 127.0.0.1:22"

out=$(cd / && op fk-operator ansible health_check --server local-sshd 2>&1) && rc=0 || rc=$?
if [ "$rc" = 0 ] && [[ $out == *"running through the daemon"* ]]; then
	ok "fleetkeeper ansible health_check --server local-sshd: exit 0, run by the daemon"
else
	fail "fleetkeeper ansible health_check: exit $rc: $(tail -n 5 <<<"$out")"
fi
if has ansible_playbook_complete playbook=health_check server_handle=local-sshd exit_code=0 result=success failed=0 unreachable=0 \
	&& has ansible_task_result playbook=health_check task_name="Report the deploy root" status=ok; then
	ok "journal: ansible_playbook_complete health_check.yml exit_code 0, result success (over SSH)"
else
	fail "no successful ansible_playbook_complete for health_check.yml: $(show 'ansible_playbook_complete|ansible_task_result|ansible_failed') $(why)"
fi
has ansible_complete && ok "journal: ansible_complete (the runner's run)" || fail "no ansible_complete: $(show 'ansible_.*' 3)"

out=$(cd / && op fk-operator ansible /usr/local/share/fk-probe/local.yml --server local-sshd -e ansible_connection=local 2>&1) && rc=0 || rc=$?
if [ "$rc" = 0 ] && has ansible_playbook_complete playbook=local.yml exit_code=0 result=success failed=0 \
	&& [ "$(stat -c %U "/var/lib/fleetkeeper/fk-probe-local")" = fleetkeeper ]; then
	ok "fleetkeeper ansible local.yml, connection local: exit 0, modules ran as fleetkeeper, wrote in the state directory, got EROFS outside it"
else
	fail "fleetkeeper ansible local.yml: exit $rc: $(tail -n 3 <<<"$out") $(show 'ansible_playbook_complete|ansible_task_result' 3) $(why)"
fi

out=$(cd / && op fk-operator trigger ansible_ping 2>&1) || fail "trigger ansible_ping: $out"
if wait_for 90 bash -c 'journalctl -b -o cat SYSLOG_IDENTIFIER=fleetkeeper | grep -qE "\"event\": *\"ansible_ping_(complete|failed)\""' \
	&& has ansible_ping_complete exit_code=0; then
	ok "command task ansible_ping: ansible_ping_complete, exit_code 0"
else
	fail "command task ansible_ping: $(journal | grep '"task": *"ansible_ping"' | tail -n 6)"
fi
journal | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "command_output" and e.get("task") == "ansible_ping":
        print(e.get("line"))' >/root/ansible_ping.out
if grep -q '^localhost | SUCCESS => .*"ping": *"pong"' /root/ansible_ping.out \
	&& grep -qP '^NoNewPrivs:\t1$' /root/ansible_ping.out && grep -qP '^Seccomp:\t2$' /root/ansible_ping.out; then
	ok "ansible_ping output: localhost | SUCCESS, pong; the task ran with NoNewPrivs 1, Seccomp 2 (filtered)"
else
	fail "ansible_ping output: $(cat /root/ansible_ping.out)"
fi
n=$(cd / && runuser -u fk-operator -- fleetkeeper runs 2>/dev/null | grep -cE '^[0-9]+ +ansible(_ping)? +success') || true
[ "$n" -ge 3 ] && ok "runs: $n successful ansible runs in the store" || {
	fail "runs: $n successful ansible runs, want 3"
	cd / && runuser -u fk-operator -- fleetkeeper runs | head -n 8
}
echo "ansible checks: $(($(date +%s) - t_ans)) s"

systemctl stop fleetkeeper
[ "$(state)" = inactive ] && ok "systemctl stop: inactive" || fail "after stop: $(state)"
journal | grep -q '"event": *"scheduler_stopped"' && ok "journal: scheduler_stopped" || fail "no scheduler_stopped"
echo "RESULT $failures"
PROBE
chmod +x "$root/root/probe.sh"
cat >"$root/etc/systemd/system/fk-probe.service" <<'UNIT'
[Unit]
Description=fleetkeeper package probe
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/root/probe.sh
ExecStopPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/fk-probe.service "$root/etc/systemd/system/multi-user.target.wants/fk-probe.service"

echo "nspawn-test: booting ($(($(date +%s) - t0)) s)"
timeout 240 "${nspawn[@]}" -b --console=read-only >/tmp/fk-nspawn-boot.log 2>&1 || true
if [ ! -f "$root/root/probe.out" ]; then
	tail -n 30 /tmp/fk-nspawn-boot.log >&2
	cannot "the container did not boot to the probe (log above, /tmp/fk-nspawn-boot.log)"
fi
cat "$root/root/probe.out"
echo "nspawn-test: $(($(date +%s) - t0)) s"
grep -qx "RESULT 0" "$root/root/probe.out"
