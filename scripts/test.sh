#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with
# AddressSanitizer + UndefinedBehaviorSanitizer and -Werror, and runs every
# test with CTest (each I/O-dependent test once per backend: io_uring and the
# pwrite/fdatasync fallback). CTest's summary is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
BUILD=${BUILD_DIR:-build-test}
cmake -S . -B "$BUILD" -DSB_SANITIZE=ON -DSB_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
rm -rf "$BUILD/testtmp"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$BUILD"
ctest --output-on-failure -j"$(nproc)" --timeout 900
