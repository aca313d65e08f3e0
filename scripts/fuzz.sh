#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan in a
# build directory of their own and runs each over its seed corpus.
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS (default 10) each
#   scripts/fuzz.sh schedule config only these targets
# Environment: FUZZ_SECONDS, FUZZ_BUILD (default build-fuzz), FUZZ_JOBS
# (parallel targets, default 1), FUZZ_WORK (where new inputs and crash files
# go; default $FUZZ_BUILD/fuzz-work — the checked-in corpus is not modified).
# Exit status: non-zero if any target crashed (the reproducer is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${FUZZ_BUILD:-build-fuzz}
secs=${FUZZ_SECONDS:-10}
work=${FUZZ_WORK:-$build/fuzz-work}

if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dbuildtype=debugoptimized \
		-Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined' >/dev/null
fi
ninja -C "$build" fuzz >/dev/null

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do
		t=${f#tests/fuzz/fuzz_}
		targets+=("${t%.c}")
	done
fi

run_one() {
	local t=$1 out="$work/$1"
	mkdir -p "$out/new" "$out/crash"
	if "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$out/crash/" \
		"$out/new" "$root/tests/fuzz/corpus/$t" >"$out/log" 2>&1; then
		echo "fuzz_$t: ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$out/log" |
			grep -o '[0-9]*$') runs in ${secs}s)"
	else
		echo "fuzz_$t: FAILED — see $out/log; reproducer(s):" >&2
		ls "$out/crash" >&2
		tail -n 40 "$out/log" >&2
		return 1
	fi
}

# Known leaks of system libraries (not ours) are listed in lsan.supp.
export LSAN_OPTIONS="suppressions=$root/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export -f run_one
export build secs work root
printf '%s\n' "${targets[@]}" |
	xargs -P "${FUZZ_JOBS:-1}" -I{} bash -c 'run_one "$@"' _ {}
