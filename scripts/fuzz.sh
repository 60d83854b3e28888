#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz in their own clang build tree,
# writes seed corpora with the project's encoders, replays the committed
# regression inputs, then fuzzes each target for a while.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGETs default to all of them
# (fuzz_batch fuzz_recovery fuzz_request fuzz_index fuzz_sstable).
# Environment: FUZZ_BUILD_DIR (build-fuzz), FUZZ_JOBS (targets run at once,
# 2), FUZZ_SAVE_REGRESS (1: copy each new crash input into
# tests/fuzz/regress/<target>/ so it can be committed).
# Exits 0 when every target ran clean (or when clang's libFuzzer is missing:
# then it prints a SKIPPED line), 1 if a target crashed or a regression
# input fails, 2 on a usage or build error. See tests/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ALL_TARGETS=(fuzz_batch fuzz_recovery fuzz_request fuzz_index fuzz_sstable)
SECONDS_PER_TARGET=${1:-60}
[[ $# -gt 0 ]] && shift
TARGETS=("$@")
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${ALL_TARGETS[@]}")
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${FUZZ_JOBS:-2}
SAVE_REGRESS=${FUZZ_SAVE_REGRESS:-1}

if ! [[ $SECONDS_PER_TARGET =~ ^[0-9]+$ ]]; then
	echo "usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
	exit 2
fi
for t in "${TARGETS[@]}"; do
	if [[ ! " ${ALL_TARGETS[*]} " =~ " $t " ]]; then
		echo "fuzz: unknown target $t (targets: ${ALL_TARGETS[*]})" >&2
		exit 2
	fi
done

# clang with the libFuzzer runtime (Debian: clang + libclang-rt-14-dev).
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
if ! command -v clang >/dev/null || ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>/dev/null; then
	echo "fuzz: SKIPPED: clang with libFuzzer not available (install clang and libclang-rt-dev; scripts/bootstrap.sh does)"
	exit 0
fi

echo "fuzz: configuring and building $BUILD (clang, libFuzzer + ASan + UBSan)"
CFLAGS_FUZZ="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
if ! CC=clang cmake -S "$ROOT" -B "$BUILD" -DSB_FUZZ=ON -DSB_SANITIZE=OFF -DSB_TESTS=ON -DSB_WERROR=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$CFLAGS_FUZZ" >"$BUILD.configure.log" 2>&1; then
	cat "$BUILD.configure.log" >&2
	exit 2
fi
rm -f "$BUILD.configure.log"
if ! cmake --build "$BUILD" -j2 --target sb_fuzz >"$BUILD/fuzz-build.log" 2>&1; then
	tail -40 "$BUILD/fuzz-build.log" >&2
	exit 2
fi

BIN=$BUILD/tests/fuzz
mkdir -p "$BUILD/corpus" "$BUILD/fuzz-logs"
"$BIN/sb_fuzz_seeds" "$BUILD/corpus"

export ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${FUZZ_UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Runs one target: replay its regression inputs, then fuzz. Writes
# $BUILD/fuzz-logs/<t>.log and <t>.result ("ok <summary>" or "FAIL <why>").
run_target() {
	local t=$1 log=$BUILD/fuzz-logs/$1.log res=$BUILD/fuzz-logs/$1.result
	local regress=$ROOT/tests/fuzz/regress/$t art=$BUILD/artifacts/$t/
	mkdir -p "$BUILD/corpus/$t" "$art"
	: >"$log"
	local files=()
	if [[ -d $regress ]]; then
		while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$regress" -type f ! -name '.*' -print0 | sort -z)
	fi
	if [[ ${#files[@]} -gt 0 ]]; then
		if ! "$BIN/$t" -rss_limit_mb=2048 -timeout=10 "${files[@]}" >>"$log" 2>&1; then
			echo "FAIL regression input in tests/fuzz/regress/$t fails (see $log)" >"$res"
			return 0
		fi
	fi
	local rc=0
	"$BIN/$t" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$art" "$BUILD/corpus/$t" >>"$log" 2>&1 || rc=$?
	if [[ $rc -ne 0 ]]; then
		local saved=""
		for a in "$art"*; do
			[[ -f $a ]] || continue
			if [[ $SAVE_REGRESS == 1 ]]; then
				mkdir -p "$regress"
				cp "$a" "$regress/"
				saved+=" tests/fuzz/regress/$t/$(basename "$a")"
			else
				saved+=" $a"
			fi
		done
		echo "FAIL crashed (exit $rc; input:${saved:- none saved}; log $log)" >"$res"
		return 0
	fi
	local done_line execs
	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
	execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log" | tail -1)
	echo "ok ${execs:-?} execs, ${done_line#*DONE   }" >"$res"
}

echo "fuzz: ${#TARGETS[@]} target(s), ${SECONDS_PER_TARGET}s each, $JOBS at a time; logs in $BUILD/fuzz-logs"
running=0
for t in "${TARGETS[@]}"; do
	if [[ $running -ge $JOBS ]]; then
		wait -n || true
		running=$((running - 1))
	fi
	run_target "$t" &
	running=$((running + 1))
done
wait

status=0
for t in "${TARGETS[@]}"; do
	r=$(cat "$BUILD/fuzz-logs/$t.result" 2>/dev/null || echo "FAIL no result")
	printf 'fuzz: %-14s %s\n' "$t" "$r"
	[[ $r == ok* ]] || status=1
done
if [[ $status -ne 0 ]]; then
	echo "fuzz: FAILED: reproduce with $BIN/<target> <input>; the stack trace is in the target's log"
fi
exit $status
