#!/usr/bin/env bash
# Builds the StreamBus container image from deploy/Dockerfile without a Docker
# daemon, using Debian's buildah (vfs storage, chroot isolation: works as root in
# a plain VM or inside another container), then smoke-tests it by running
# `streambusd --version` and `streambus --version` inside the built image.
#
# usage: deploy/build-image.sh [options]
#   --tag NAME:TAG     image to produce (default streambus:<version from CMakeLists.txt>)
#   --debootstrap      no container registry reachable: make a local Debian 12
#                      (bookworm, minbase) base image with debootstrap from a Debian
#                      mirror and build on it instead of docker.io's
#                      debian:bookworm-slim. Only Debian's mirror is contacted.
#   --mirror URL       Debian mirror for --debootstrap (default http://deb.debian.org/debian)
#   --base IMAGE       base image for both stages (default debian:bookworm-slim,
#                      or the debootstrap image with --debootstrap)
#   --no-tests         skip the unit tests in the build stage (SB_TESTS=0)
#   --save PATH        also write the image as a docker-archive tarball to PATH
#                      (e.g. for `kind load image-archive` or `ctr images import`)
#   -h, --help         this text
#
# Environment: BUILDAH (default buildah), BUILDAH_STORAGE_DRIVER (default vfs).
# Needs root (or `buildah unshare deploy/build-image.sh ...` with subuids set up).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "build-image: $*" >&2; exit 1; }

version=$(sed -n 's/^project(streambus VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
tag="streambus:${version:-dev}"
use_debootstrap=0
mirror=http://deb.debian.org/debian
base=""
tests=1
save=""
while [ $# -gt 0 ]; do
	case "$1" in
	--tag) tag=${2:?--tag needs NAME:TAG}; shift 2 ;;
	--tag=*) tag=${1#*=}; shift ;;
	--debootstrap) use_debootstrap=1; shift ;;
	--mirror) mirror=${2:?--mirror needs a URL}; shift 2 ;;
	--mirror=*) mirror=${1#*=}; shift ;;
	--base) base=${2:?--base needs an image}; shift 2 ;;
	--base=*) base=${1#*=}; shift ;;
	--no-tests) tests=0; shift ;;
	--save) save=${2:?--save needs a path}; shift 2 ;;
	--save=*) save=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
done

BUILDAH=${BUILDAH:-buildah}
if ! command -v "$BUILDAH" >/dev/null 2>&1; then
	echo "build-image: buildah is not installed. On Debian 12 install it with:" >&2
	if [ "$use_debootstrap" = 1 ]; then
		echo "    apt-get update && apt-get install -y --no-install-recommends buildah debootstrap" >&2
	else
		echo "    apt-get update && apt-get install -y --no-install-recommends buildah" >&2
	fi
	exit 1
fi
if [ "$use_debootstrap" = 1 ] && ! command -v debootstrap >/dev/null 2>&1; then
	echo "build-image: --debootstrap needs debootstrap. On Debian 12 install it with:" >&2
	echo "    apt-get update && apt-get install -y --no-install-recommends debootstrap" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ] && [ -z "${BUILDAH_ISOLATION:-}${_CONTAINERS_USERNS_CONFIGURED:-}" ]; then
	echo "build-image: warning: not root; if buildah fails, run as root or via 'buildah unshare'" >&2
fi

driver=${BUILDAH_STORAGE_DRIVER:-vfs}
bh() { "$BUILDAH" --storage-driver "$driver" "$@"; }
log() { echo "build-image: $*" >&2; }

# --- optional local Debian 12 base made by debootstrap -----------------------
pull=true
if [ "$use_debootstrap" = 1 ] && [ -z "$base" ]; then
	base=localhost/streambus-debian-bookworm:debootstrap
	pull=never
	if bh inspect --type image "$base" >/dev/null 2>&1; then
		log "reusing local base $base (remove it with: buildah --storage-driver $driver rmi $base)"
	else
		work=$(mktemp -d /var/tmp/sb-debootstrap.XXXXXX)
		trap 'rm -rf "$work"' EXIT
		log "debootstrap bookworm (minbase) from $mirror into $work/rootfs ..."
		debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
			{ tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (full log: $work/debootstrap.log)"; }
		# Same apt sources as debian:bookworm-slim (main + updates + security).
		cat >"$work/rootfs/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
		# Slim-like: no apt lists, caches, docs or man pages in the base.
		rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin \
			"$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/usr/share/man/"* \
			"$work/rootfs/usr/share/doc/"*
		tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
		ctr=$(bh from scratch)
		bh add "$ctr" "$work/rootfs.tar" / >/dev/null
		bh config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			--label org.opencontainers.image.description="Debian 12 minbase (debootstrap, $mirror)" "$ctr"
		bh commit --rm "$ctr" "$base" >/dev/null
		rm -rf "$work"
		trap - EXIT
		log "made local base $base"
	fi
fi
base=${base:-debian:bookworm-slim}
if [ "$pull" = true ] && [ "${base#localhost/}" != "$base" ]; then
	pull=never
fi

# --- build ---------------------------------------------------------------------
log "building $tag from $root (base $base, unit tests: $([ "$tests" = 1 ] && echo on || echo off))"
bh bud --isolation chroot --pull="$pull" \
	--build-arg BASE_IMAGE="$base" --build-arg SB_TESTS="$tests" \
	-f "$root/deploy/Dockerfile" -t "$tag" "$root"

# --- smoke test: run the binaries inside the image ------------------------------
log "smoke test: streambusd --version inside $tag"
ctr=$(bh from --pull=never "$tag")
cleanup() { bh rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT
out=$(bh run --isolation chroot "$ctr" -- /usr/local/bin/streambusd --version) ||
	die "streambusd --version failed inside $tag"
echo "$out"
case "$out" in "streambusd $version"*) ;; *) die "unexpected version output: $out" ;; esac
bh run --isolation chroot "$ctr" -- /usr/local/bin/streambus --version ||
	die "streambus --version failed inside $tag"
bh run --isolation chroot --env POD_NAME=streambus-0 --env STREAMBUS_REPLICAS=1 "$ctr" -- \
	/usr/local/bin/streambus-entrypoint --version ||
	die "streambus-entrypoint failed inside $tag"
user=$(bh inspect --type image --format '{{.OCIv1.Config.User}}' "$tag")
[ "$user" = "10001:10001" ] || die "image user is \"$user\", want 10001:10001"
cleanup
trap - EXIT

if [ -n "$save" ]; then
	rm -f "$save"
	bh push "$tag" "docker-archive:$save:$tag"
	log "wrote $save"
fi
log "ok: $tag"
