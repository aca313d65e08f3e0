#!/usr/bin/env bash
# The Debian package on this machine (issue 19; the CI package stage):
# install it with apt, check the layout, the user, the modes, the CLI as
# the fleetkeeper user and as others, the unit (systemd-analyze verify and
# security), the man pages and the completion; then an upgrade (reinstall),
# `apt-get remove` (state and configuration stay) and `apt-get purge`
# (they go). Needs root and a machine where fleetkeeper may be installed and
# purged (CI). Exit 0 when every check passed.
#   tests/package/check-installed.sh [DEB]    (default build-pkg/fleetkeeper_*.deb)
# FK_SECURITY_MAX: the highest `systemd-analyze security` exposure accepted
# (default 2.5, "OK").
set -euo pipefail
cd "$(dirname "$0")/../.."

deb=${1:-$(ls build-pkg/fleetkeeper_*_*.deb | grep -v dbgsym | head -n 1)}
max=${FK_SECURITY_MAX:-2.5}
conf=/etc/fleetkeeper/fleetkeeper.conf
state=/var/lib/fleetkeeper
unit=/lib/systemd/system/fleetkeeper.service
failures=0
t0=$(date +%s.%N)

ok() { echo "ok   $*"; }
fail() {
	echo "FAIL $*" >&2
	failures=$((failures + 1))
}
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}
mode_owner() { # mode_owner PATH MODE USER GROUP
	local got
	got=$(stat -c '%a %U %G' "$1" 2>/dev/null || echo missing)
	if [ "$got" = "$2 $3 $4" ]; then ok "$1: $got"; else fail "$1: $got, want $2 $3 $4"; fi
}
as_user() { # as_user USER COMMAND... (in the state directory's parent, not root's home)
	local u=$1
	shift
	(cd / && runuser -u "$u" -- "$@")
}
elapsed() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(date +%s.%N)"; }

[ "$(id -u)" -eq 0 ] || { echo "check-installed: needs root" >&2; exit 2; }
[ -f "$deb" ] || { echo "check-installed: no package $deb (scripts/package.sh)" >&2; exit 2; }
deb=$(realpath "$deb")
export DEBIAN_FRONTEND=noninteractive
if dpkg-query -W -f='${Status}' fleetkeeper 2>/dev/null | grep -q installed; then
	apt-get purge -y -q fleetkeeper >/dev/null
fi
rm -rf "$state" /etc/fleetkeeper

echo "== install $deb"
apt-get install -y -q "$deb" >/tmp/fk-pkg-install.log 2>&1 || {
	tail -n 30 /tmp/fk-pkg-install.log >&2
	exit 1
}
ok "apt-get install ./$(basename "$deb") ($(elapsed "$t0") s)"

echo "== layout, user, modes"
for f in /usr/bin/fleetkeeper $conf $unit /usr/lib/sysusers.d/fleetkeeper.conf \
	/usr/lib/tmpfiles.d/fleetkeeper.conf /usr/share/fleetkeeper/playbooks/deploy_project.yml \
	/usr/share/fleetkeeper/grafana/dashboards/fleetkeeper.json \
	/usr/share/fleetkeeper/prometheus/rules/fleetkeeper.yml /usr/share/fleetkeeper/promtail/promtail.yml \
	/usr/share/man/man8/fleetkeeper.8.gz /usr/share/man/man5/fleetkeeper.conf.5.gz \
	/usr/share/bash-completion/completions/fleetkeeper; do
	check "installed: $f" test -e "$f"
done
check "conffile: $conf" grep -qx "$conf" /var/lib/dpkg/info/fleetkeeper.conffiles
check "system user fleetkeeper (no login shell)" \
	bash -c '[ "$(getent passwd fleetkeeper | cut -d: -f6,7)" = "/var/lib/fleetkeeper:/usr/sbin/nologin" ]'
check "system group fleetkeeper" bash -c 'getent group fleetkeeper >/dev/null'
mode_owner "$state" 750 fleetkeeper fleetkeeper
mode_owner /etc/fleetkeeper/secrets 750 root fleetkeeper
mode_owner "$conf" 640 root fleetkeeper

echo "== the CLI as the fleetkeeper user"
check "check-config $conf" as_user fleetkeeper fleetkeeper -c "$conf" check-config
out=$(as_user fleetkeeper fleetkeeper -c "$conf" once hello 2>&1) && rc=0 || rc=$?
if [ "$rc" -eq 0 ] && grep -q '"event": *"hello_complete"' <<<"$out"; then
	ok "once hello: exit 0, hello_complete"
else
	fail "once hello: exit $rc"
	echo "$out" | tail -n 20 >&2
fi
bad=$(find "$state" -mindepth 1 \( ! -user fleetkeeper -o ! -group fleetkeeper -o -perm /o=rwx \) -printf '%p %u:%g %m\n')
check "state files owned by fleetkeeper, none open to others${bad:+: $bad}" test -z "$bad"
# 0640: /var/lib/fleetkeeper (0750) admits its group (docs/packaging.md, "Operators")
mode_owner "$state/state.db" 640 fleetkeeper fleetkeeper
check "runs shows the hello run" bash -c "cd / && runuser -u fleetkeeper -- fleetkeeper -c $conf runs | grep -q hello"
# The default configuration of an installed build (meson -Dsystem_config=true).
check "fleetkeeper help names $conf as the default" \
	bash -c "cd / && runuser -u fleetkeeper -- fleetkeeper help | grep -q 'else $conf'"
check "check-config without -c reads $conf" as_user fleetkeeper fleetkeeper check-config

echo "== an operator in the fleetkeeper group"
id fk-operator >/dev/null 2>&1 || useradd --system -M -G fleetkeeper -s /usr/sbin/nologin fk-operator
check "check-config as fk-operator" as_user fk-operator fleetkeeper -c "$conf" check-config
out=$(as_user fk-operator fleetkeeper -c "$conf" runs 2>&1) && rc=0 || rc=$?
if [ "$rc" -eq 0 ] && grep -q hello <<<"$out"; then
	ok "runs as fk-operator (group fleetkeeper) reads the store"
else
	fail "runs as fk-operator (group fleetkeeper): exit $rc: $(tail -n 1 <<<"$out")"
fi
userdel fk-operator

echo "== others are refused"
out=$(as_user nobody fleetkeeper -c "$conf" status 2>&1) && rc=0 || rc=$?
if [ "$rc" -ne 0 ] && grep -qi "permission denied" <<<"$out" &&
	grep -q "members of group fleetkeeper" <<<"$out"; then
	ok "status as nobody: exit $rc, $(head -n 1 <<<"$out")"
else
	fail "status as nobody: exit $rc: $out"
fi

echo "== the unit"
check "systemd-analyze verify $unit" systemd-analyze verify "$unit"
sec=$(systemd-analyze security --offline=true "$unit" 2>&1 | tail -n 1)
score=$(sed -n 's/.*Overall exposure level for fleetkeeper.service: \([0-9.]*\).*/\1/p' <<<"$sec")
if [ -n "$score" ] && python3 -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$score" "$max"; then
	ok "systemd-analyze security: $score (at most $max): ${sec##*: }"
else
	fail "systemd-analyze security: '$sec', want at most $max"
fi

echo "== man pages, completion"
for m in /usr/share/man/man8/fleetkeeper.8.gz /usr/share/man/man5/fleetkeeper.conf.5.gz; do
	lint=$(mandoc -T lint -W warning "$m" 2>&1 | grep -v mandoc.db || true)
	check "mandoc -T lint $m${lint:+: $lint}" test -z "$lint"
done
check "man fleetkeeper.conf lists [daemon] state_dir" \
	bash -c 'MANPAGER=cat man -P cat 5 fleetkeeper.conf 2>/dev/null | grep -q state_dir'
words=$(bash -c 'source /usr/share/bash-completion/completions/fleetkeeper
	COMP_WORDS=(fleetkeeper once ""); COMP_CWORD=2; _fleetkeeper; echo "${COMPREPLY[*]}"')
check "completion of 'fleetkeeper once ': $words" grep -qw hello <<<"$words"

echo "== upgrade (reinstall): state and configuration kept"
echo "; local change" >>"$conf"
apt-get install -y -q --reinstall "$deb" >/tmp/fk-pkg-install.log 2>&1 || fail "reinstall"
check "modified conffile kept" grep -q "^; local change" "$conf"
check "state kept" test -s "$state/state.db"
mode_owner "$conf" 640 root fleetkeeper

echo "== remove: state and configuration stay"
apt-get remove -y -q fleetkeeper >/tmp/fk-pkg-remove.log 2>&1 || fail "apt-get remove"
check "binary removed" test ! -e /usr/bin/fleetkeeper
check "state kept after remove" test -s "$state/state.db"
check "configuration kept after remove" test -f "$conf"

echo "== purge: state and configuration go"
apt-get purge -y -q fleetkeeper >/tmp/fk-pkg-remove.log 2>&1 || fail "apt-get purge"
check "state removed by purge" test ! -e "$state"
check "configuration removed by purge" test ! -e /etc/fleetkeeper

echo "check-installed: $failures failed ($(elapsed "$t0") s)"
[ "$failures" -eq 0 ]
