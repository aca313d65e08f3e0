#!/usr/bin/env bash
# The package under a real systemd (issue 19): a Debian 12 tree made by
# debootstrap, booted with `systemd-nspawn -b`; inside it the package is
# installed with apt and a probe unit checks the service: active (running)
# after READY=1, `systemctl reload` (SIGHUP: config_reloaded, same PID), the
# watchdog (SIGSTOP: killed and restarted), its JSON lines in the journal
# with SYSLOG_IDENTIFIER=fleetkeeper, a clean stop. Root only.
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
# .deb in the container needs no network.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | paste -sd, -)
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

root=$(mktemp -d /var/tmp/fleetkeeper-nspawn.XXXXXX)
trap 'rm -rf "$root"' EXIT
cp -a "$base/." "$root/"
cp "$deb" "$root/root/fleetkeeper.deb"
echo "nspawn-test: tree copied ($(($(date +%s) - t0)) s)"

nspawn=(systemd-nspawn -q -D "$root" --register=no --keep-unit)
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
