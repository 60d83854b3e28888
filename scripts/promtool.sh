#!/usr/bin/env bash
# Prints the path of a `promtool` binary (Prometheus' checker: `promtool check
# metrics` lints a /metrics exposition) without installing the Prometheus server.
#
# usage: scripts/promtool.sh [DIR]
#   1. `promtool` on PATH: prints that;
#   2. else a promtool already extracted into DIR (default: <repo>/build-promtool,
#      gitignored): prints DIR/root/usr/bin/promtool;
#   3. else `apt-get download prometheus` (Debian 12: 2.42.0+ds; the package
#      ships /usr/bin/promtool) into DIR, `dpkg -x` it, keeps only
#      DIR/root/usr/bin/promtool (~48 MB) and prints that path.  Nothing is
#      installed (no dpkg -i, no service, no root needed once the apt lists exist).
#      Runs `apt-get update` first only when the package is unknown and we are root.
# Exits non-zero with a message on stderr when no promtool can be had.
# Example:  promtool=$(scripts/promtool.sh) && "$promtool" check metrics <metrics.txt
set -euo pipefail
die() { echo "promtool.sh: $*" >&2; exit 1; }

if p=$(command -v promtool 2>/dev/null); then
	echo "$p"
	exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build-promtool}
mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)
bin="$dir/root/usr/bin/promtool"
works() { [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; }

if ! works; then
	if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
		die "no promtool on PATH and no apt-get/dpkg-deb to fetch Debian's prometheus package"
	fi
	exec 9>"$dir/.lock" # one download at a time (parallel tests)
	command -v flock >/dev/null && flock 9
	if ! works; then
		tmp=$(mktemp -d "$dir/dl.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		fetch() { (cd "$tmp" && apt-get download -qq prometheus) >"$tmp/apt.log" 2>&1; }
		if ! fetch; then
			if [ "$(id -u)" -eq 0 ] && grep -qiE 'unable to locate|no candidate|has no installation candidate' "$tmp/apt.log"; then
				echo "promtool.sh: apt-get update (the prometheus package is not in the apt lists)" >&2
				apt-get update -qq >&2 || true
			fi
			fetch || die "apt-get download prometheus failed: $(grep -v '^$' "$tmp/apt.log" | tail -3 | tr '\n' ' ')
  (Debian's prometheus package provides promtool; or put promtool on PATH)"
		fi
		debs=("$tmp"/prometheus_*.deb)
		deb=${debs[0]}
		[ -f "$deb" ] || die "apt-get download prometheus produced no .deb"
		mkdir -p "$tmp/root"
		dpkg-deb -x "$deb" "$tmp/root" || die "dpkg -x $deb failed"
		[ -x "$tmp/root/usr/bin/promtool" ] || die "$(basename "$deb") has no /usr/bin/promtool"
		# keep only promtool (the package also has the server, ~100 MB)
		rm -rf "$dir/root" "$dir"/prometheus_*.deb
		mkdir -p "$dir/root/usr/bin"
		mv "$tmp/root/usr/bin/promtool" "$bin"
		echo "promtool.sh: extracted promtool from $(basename "$deb") into $dir" >&2
		works || die "$bin does not run: $("$bin" --version 2>&1 | head -2)"
	fi
fi
echo "$bin"
