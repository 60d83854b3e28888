#!/usr/bin/env bash
# The README's first command: installs what is missing, builds an optimised
# StreamBus, and starts a single-node server on 127.0.0.1:7070 with its data
# in ./data, in the foreground (Ctrl-C drains and stops it cleanly). In
# another terminal: ./build/streambus topic create demo, then produce/consume.
# Extra arguments go to streambusd (see ./build/streambusd --help).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSB_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"
mkdir -p data
echo "streambusd: serving on 127.0.0.1:7070, data in $(pwd)/data (Ctrl-C to stop)" >&2
exec ./build/streambusd --listen 127.0.0.1:7070 --data-dir ./data "$@"
