#!/usr/bin/env bash
# Soak mode of the fault-injection suite, for use before a release:
#
#   bash tests/fault/soak.sh [MINUTES] [BUILD_DIR]     (default 30 minutes, build-test)
#
# Runs every fault test (faultfs self-test, history checker, kill -9 cycles,
# disk faults, mutants, network partitions) again and again, each round with a
# new SB_FAULT_SEED (printed), until MINUTES have passed or a round fails. A
# failing round keeps its scratch directories and prints the seed that
# repeats its random timings. Needs the test build (scripts/test.sh makes it:
# ASan+UBSan and the mutants) and root for FUSE and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-30}
build=${2:-build-test}
[ -d "$build" ] || { echo "soak: no build in $build: run bash scripts/test.sh first" >&2; exit 2; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
end=$(($(date +%s) + minutes * 60))
round=0
while [ "$(date +%s)" -lt "$end" ]; do
	round=$((round + 1))
	export SB_FAULT_SEED=$(( (RANDOM << 15 | RANDOM) % 1000000 ))
	echo "soak: round $round, SB_FAULT_SEED=$SB_FAULT_SEED, $(( (end - $(date +%s)) / 60 )) min left"
	if ! (cd "$build" && ctest -R '^(faultfs_|fault_)' --output-on-failure -j1 --timeout 900 \
		>"soak-round-$round.log" 2>&1); then
		echo "soak: round $round FAILED (SB_FAULT_SEED=$SB_FAULT_SEED); log: $build/soak-round-$round.log" >&2
		grep -E '^(FAIL|PASS)|tests passed' "$build/soak-round-$round.log" | tail -20 >&2
		exit 1
	fi
	grep -E 'tests passed' "$build/soak-round-$round.log"
	rm -f "$build/soak-round-$round.log"
	rm -rf "$build/testtmp" # passing rounds keep nothing
done
echo "soak: $round rounds passed in $minutes minutes"
