#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with
# AddressSanitizer + UndefinedBehaviorSanitizer, -Werror and the fault suite's
# mutants (common/sb_mutant.h, off unless STREAMBUS_MUTANT is set), and runs every
# test with CTest (each I/O-dependent test once per backend: io_uring and the
# pwrite/fdatasync fallback), after a short run of every libFuzzer target
# (scripts/fuzz.sh). CTest's summary is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
BUILD=${BUILD_DIR:-build-test}
cmake -S . -B "$BUILD" -DSB_SANITIZE=ON -DSB_WERROR=ON -DSB_MUTANTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
rm -rf "$BUILD/testtmp"
# Fuzz stage: every libFuzzer target of tests/fuzz for 45 s, two at a time,
# in its own clang tree (build-fuzz); about 3 minutes. A crash fails the
# run; without clang's libFuzzer it prints a skip line. Set SB_FUZZ_SECONDS=0
# to skip it. Full output: build-fuzz/fuzz.log (and build-fuzz/fuzz-logs/).
FUZZ_SECONDS=${SB_FUZZ_SECONDS:-45}
if [[ $FUZZ_SECONDS != 0 ]]; then
	mkdir -p build-fuzz
	if bash scripts/fuzz.sh "$FUZZ_SECONDS" >build-fuzz/fuzz.log 2>&1; then
		grep -E '^fuzz: SKIPPED' build-fuzz/fuzz.log ||
			echo "fuzz stage: $(grep -cE '^fuzz: fuzz_\S+ +ok' build-fuzz/fuzz.log) targets, ${FUZZ_SECONDS}s each, no crash (build-fuzz/fuzz.log)"
	else
		echo "fuzz stage FAILED (build-fuzz/fuzz.log):" >&2
		grep -E '^fuzz: ' build-fuzz/fuzz.log >&2 || tail -40 build-fuzz/fuzz.log >&2
		exit 1
	fi
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$BUILD"
ctest --output-on-failure -j"$(nproc)" --timeout 900
