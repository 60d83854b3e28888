#!/usr/bin/env bash
# The README's first command: installs what is missing, builds an optimised
# StreamBus, and runs the storage benchmark (quick mode) against a data
# folder in ./data. (Until the gRPC server lands, this is the thing to run.)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSB_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"
mkdir -p data
exec ./build/bench_storage --quick --dir ./data/bench "$@"
