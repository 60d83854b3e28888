#!/usr/bin/env bash
# Installs the Debian 12 packages StreamBus needs to build and test, only when
# something is missing (non-interactive, idempotent; `apt-get update` runs
# only if an install is needed). Run as root, or with sudo available.
set -euo pipefail

PACKAGES=(
	build-essential cmake pkg-config   # toolchain
	liburing-dev                        # io_uring engine
	libcmocka-dev                       # unit tests
	libgrpc-dev grpc-proto              # gRPC C core; health/reflection protos
	libprotobuf-c-dev protobuf-c-compiler protobuf-compiler  # protoc-c, descriptor sets
	protobuf-compiler-grpc python3-grpcio python3-protobuf   # Python examples and tests
	libssl-dev openssl python3-cryptography  # SHA-256 token hashes; test certificates
	libmicrohttpd-dev                   # the /metrics endpoint
	libfuse3-dev fuse3                  # tests/faultfs: the fault-injecting file system
	clang libclang-rt-14-dev            # tests/fuzz: libFuzzer targets
	iproute2 iptables util-linux        # fault tests: namespaces, partitions, fsfreeze
	yamllint                            # deploy/validate.sh: lint the manifests
)

# deploy/validate.sh checks the manifests against the Kubernetes schemas with
# pinned npm packages (deploy/schema): Node.js and npm from Debian, unless some
# Node.js is installed already (a second one would conflict with it).
if ! command -v npm >/dev/null 2>&1; then
	PACKAGES+=(nodejs npm)
fi
# kubectl renders the kustomize overlays: Debian's, unless one is installed.
if ! command -v kubectl >/dev/null 2>&1; then
	PACKAGES+=(kubernetes-client)
fi

missing=()
for p in "${PACKAGES[@]}"; do
	case "$p" in \#*) continue ;; esac
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
echo "bootstrap: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
