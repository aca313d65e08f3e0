#!/usr/bin/env bash
# The whole test suite: install what is missing, build (warnings are
# errors), run the cmocka unit tests and the integration tests, the latter
# twice: on SQLite, then on a PostgreSQL the suite starts itself
# (FK_TEST_BACKEND=postgresql, tests/integration/pg.py).
#   scripts/test.sh              the normal build, in build-test/
#   scripts/test.sh --sanitize   the same suite built with ASan + UBSan, in build-asan/
# Environment:
#   FK_TEST_BACKENDS="sqlite postgresql"  the integration runs (either or both)
#   FK_TEST_PARALLEL=1|0                  the two backends' suites at once (the default,
#                                         but not with --sanitize) or one after the other
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh test

builddir=build-test
parallel=${FK_TEST_PARALLEL:-1}
opts=(--buildtype=debugoptimized -Dwerror_dev=true)
if [ "${1:-}" = "--sanitize" ]; then
	builddir=build-asan
	parallel=${FK_TEST_PARALLEL:-0}  # ASan's daemons are slow enough on 2 cores
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

# One integration run: FK_TEST_BACKEND=$1, junit XML into $builddir. Its
# own pytest temporary directory (short: it holds unix sockets), so that two
# runs at once do not clean up each other's.
integ_run() {
	local backend=$1
	FK_TEST_BACKEND="$backend" FLEETKEEPER_BIN="$PWD/$builddir/fleetkeeper" FK_SOURCE_ROOT="$PWD" \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration \
		--basetemp="/tmp/fk-it-$backend" --junitxml="$builddir/integration-$backend.xml"
}
integ_counts() {
	/usr/bin/python3 -c 'import sys,xml.etree.ElementTree as E
r=E.parse(sys.argv[1]).getroot(); s=r if r.tag=="testsuite" else r[0]
t=int(s.get("tests")); f=int(s.get("failures"))+int(s.get("errors")); k=int(s.get("skipped"))
print(t-f-k, f, k)' "$1" 2>/dev/null || echo "0 1 0"
}

backends=(${FK_TEST_BACKENDS:-sqlite postgresql})
declare -A integ_rc integ_secs
if [ "$parallel" = "1" ] && [ ${#backends[@]} -gt 1 ]; then
	declare -A pids
	for b in "${backends[@]}"; do
		rm -f "$builddir/integration-$b.xml"
		( start=$(date +%s); rc=0; integ_run "$b" >"$builddir/integration-$b.log" 2>&1 || rc=$?
		  echo "$rc $(($(date +%s) - start))" >"$builddir/integration-$b.rc" ) &
		pids[$b]=$!
	done
	for b in "${backends[@]}"; do
		wait "${pids[$b]}" || true
		echo "==== integration on $b ===="
		tail -n 60 "$builddir/integration-$b.log"
		read -r integ_rc[$b] integ_secs[$b] <"$builddir/integration-$b.rc"
	done
else
	for b in "${backends[@]}"; do
		rm -f "$builddir/integration-$b.xml"
		echo "==== integration on $b ===="
		start=$(date +%s)
		rc=0
		integ_run "$b" || rc=$?
		integ_rc[$b]=$rc
		integ_secs[$b]=$(($(date +%s) - start))
	done
fi
integ_pass=0 integ_fail=0 integ_skip=0 integ_ok=1 integ_line=""
for b in "${backends[@]}"; do
	read -r p f k <<<"$(integ_counts "$builddir/integration-$b.xml")"
	integ_pass=$((integ_pass + p)) integ_fail=$((integ_fail + f)) integ_skip=$((integ_skip + k))
	[ "${integ_rc[$b]}" -eq 0 ] || integ_ok=0
	integ_line+="; integration on $b: $p passed, $f failed, $k skipped (${integ_secs[$b]} s)"
done

passed=$((unit_n - unit_failed + integ_pass))
failed=$((unit_failed + integ_fail))
echo "unit executables: $((unit_n - unit_failed)) passed, $unit_failed failed$integ_line"
echo "$passed passed, $failed failed, $integ_skip skipped"
[ "$unit_rc" -eq 0 ] && [ "$integ_ok" -eq 1 ] && [ "$failed" -eq 0 ]
