#!/bin/sh
# Generates the Python gRPC stubs the examples import, from the API in api/.
#
#   examples/python/gen_stubs.sh [OUT_DIR]      (default: examples/python/gen)
#
# Needs protoc and grpc_python_plugin (Debian: protobuf-compiler,
# protobuf-compiler-grpc) and, for the health service, grpc-proto
# (/usr/share/grpc-proto; override with GRPC_PROTO_DIR). No pip packages.
#
# OUT_DIR gets streambus/v1/streambus_pb2.py and streambus_pb2_grpc.py, plus
# health_pb2.py and health_pb2_grpc.py. health.proto is compiled from a copy
# placed at the top of a scratch include path, so its modules are top-level
# `health_pb2*` instead of `grpc/health/v1/health_pb2*`: a generated `grpc/`
# package in OUT_DIR would shadow the real grpc library on sys.path.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-"$here/gen"}
grpc_proto=${GRPC_PROTO_DIR:-/usr/share/grpc-proto}
protoc=${PROTOC:-protoc}
plugin=${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || true)}

if [ -z "$plugin" ] || ! command -v "$protoc" >/dev/null 2>&1; then
	echo "gen_stubs.sh: needs protoc and grpc_python_plugin (apt-get install protobuf-compiler protobuf-compiler-grpc)" >&2
	exit 1
fi

mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

set -- "$root/api/streambus/v1/streambus.proto"
if [ -f "$grpc_proto/grpc/health/v1/health.proto" ]; then
	cp "$grpc_proto/grpc/health/v1/health.proto" "$scratch/health.proto"
	set -- "$@" "$scratch/health.proto"
else
	echo "gen_stubs.sh: $grpc_proto/grpc/health/v1/health.proto not found: skipping the health stubs" >&2
fi

"$protoc" -I"$root/api" -I"$scratch" \
	--python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc="$plugin" "$@"

# streambus/ and streambus/v1/ must be packages for `from streambus.v1 import ...`.
touch "$out/streambus/__init__.py" "$out/streambus/v1/__init__.py"
echo "Python stubs written to $out"
