#!/usr/bin/env bash
# The whole test suite: install what is missing, build (warnings are
# errors), run the cmocka unit tests and the integration tests.
#   scripts/test.sh              the normal build, in build-test/
#   scripts/test.sh --sanitize   the same suite built with ASan + UBSan, in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh test

builddir=build-test
opts=(--buildtype=debugoptimized -Dwerror_dev=true)
if [ "${1:-}" = "--sanitize" ]; then
	builddir=build-asan
	opts=(--buildtype=debug -Dwerror_dev=true -Db_sanitize=address,undefined -Db_lundef=false)
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
if [ -f "$builddir/build.ninja" ]; then
	meson setup --reconfigure "$builddir" "${opts[@]}" >/dev/null
else
	meson setup "$builddir" "${opts[@]}"
fi
meson compile -C "$builddir"

unit_rc=0
meson test -C "$builddir" --suite unit --print-errorlogs --num-processes 2 || unit_rc=$?
unit_total=$(python3 -c 'import json,sys
r=[json.loads(l) for l in open(sys.argv[1])]
print(len(r), sum(1 for x in r if x["result"]!="OK"))' "$builddir/meson-logs/testlog.json")
unit_n=${unit_total% *}
unit_failed=${unit_total#* }

integ_rc=0
FLEETKEEPER_BIN="$PWD/$builddir/fleetkeeper" FK_SOURCE_ROOT="$PWD" \
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration \
	--junitxml="$builddir/integration.xml" || integ_rc=$?
integ=$(/usr/bin/python3 -c 'import sys,xml.etree.ElementTree as E
r=E.parse(sys.argv[1]).getroot(); s=r if r.tag=="testsuite" else r[0]
t=int(s.get("tests")); f=int(s.get("failures"))+int(s.get("errors")); k=int(s.get("skipped"))
print(t-f-k, f, k)' "$builddir/integration.xml" 2>/dev/null || echo "0 1 0")
read -r integ_pass integ_fail integ_skip <<<"$integ"

passed=$((unit_n - unit_failed + integ_pass))
failed=$((unit_failed + integ_fail))
echo "unit executables: $((unit_n - unit_failed)) passed, $unit_failed failed; integration: $integ_pass passed, $integ_fail failed, $integ_skip skipped"
echo "$passed passed, $failed failed, $integ_skip skipped"
[ "$unit_rc" -eq 0 ] && [ "$integ_rc" -eq 0 ] && [ "$failed" -eq 0 ]
