#!/usr/bin/env bash
# Offline validation of the StreamBus deployment files (no cluster needed):
#   1. renders every kustomize overlay (kubectl kustomize, or standalone kustomize)
#   2. checks each render with deploy/check_manifests.py (probes, securityContext,
#      PDB, Services, replicas, grace period, resources, pinned image, ...)
#   3. shell-checks deploy/entrypoint.sh and runs it with a fake streambusd to
#      verify --node-id/--peers/--listen for each overlay's replica count
#   4. checks the Localhost seccomp profile parses and allows io_uring
# Installs kubernetes-client / python3-yaml with apt-get when missing (as root);
# with SB_VALIDATE_NO_INSTALL=1 (CTest) it skips with exit 77 instead.
# Exits non-zero and prints each failed check on any violation.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
bad() { echo "FAIL $*" >&2; fail=1; }

apt_install() {
	if [ "${SB_VALIDATE_NO_INSTALL:-0}" = 1 ]; then # under CTest: skip, do not install
		echo "validate: SKIP: $* not installed (run deploy/validate.sh by hand to install it)" >&2
		exit 77
	fi
	[ "$(id -u)" -eq 0 ] || { echo "validate: need $* (run: sudo apt-get install -y $*)" >&2; exit 2; }
	echo "validate: installing $*" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- tools ---------------------------------------------------------------------
if command -v kubectl >/dev/null 2>&1; then
	render() { kubectl kustomize "$1"; }
	echo "validate: $(kubectl version --client 2>/dev/null | head -2 | tr '\n' ' ')"
elif command -v kustomize >/dev/null 2>&1; then
	render() { kustomize build "$1"; }
	echo "validate: kustomize $(kustomize version 2>/dev/null | head -1)"
else
	# Debian 12: kubernetes-client = kubectl 1.20 (embedded kustomize v2.0.3).
	apt-cache policy kubernetes-client 2>/dev/null | grep -q 'Candidate: [0-9]' ||
		{ echo "validate: no kubectl/kustomize and no kubernetes-client package" >&2; exit 2; }
	apt_install kubernetes-client
	render() { kubectl kustomize "$1"; }
fi
PY=/usr/bin/python3
[ -x "$PY" ] || apt_install python3
"$PY" -c 'import yaml' 2>/dev/null || apt_install python3-yaml

# --- 1+2: render and check each overlay --------------------------------------------
declare -A replicas=([single]=1 [cluster-3]=3)
for ov in single cluster-3; do
	dir="$here/k8s/overlays/$ov"
	if ! render "$dir" >"$out/$ov.yaml" 2>"$out/$ov.err"; then
		cat "$out/$ov.err" >&2
		bad "[$ov] kustomize render failed"
		continue
	fi
	grep -v '^# Warning' "$out/$ov.err" >&2 || true
	echo "validate: rendered $ov ($(grep -c '^kind:' "$out/$ov.yaml") objects)"
	"$PY" "$here/check_manifests.py" --name "$ov" --replicas "${replicas[$ov]}" "$out/$ov.yaml" || fail=1
done

# --- 2a: YAML syntax and style of the sources (Debian's yamllint, when present) ---
if command -v yamllint >/dev/null 2>&1; then
	yamllint -d '{extends: relaxed, rules: {line-length: {max: 140}}}' "$here/k8s" || bad "yamllint"
else
	echo "validate: yamllint not installed: YAML lint skipped (apt-get install yamllint)" >&2
fi

# --- 2b: the checker must catch broken manifests (a checker that never fails
# proves nothing): each mutation of the cluster-3 render must be rejected ----------
if [ -s "$out/cluster-3.yaml" ]; then
	mutate() { # name sed-expression
		sed -e "$2" "$out/cluster-3.yaml" >"$out/broken-$1.yaml"
		if cmp -s "$out/cluster-3.yaml" "$out/broken-$1.yaml"; then
			bad "negative test $1: the mutation changed nothing (update validate.sh)"
		elif "$PY" "$here/check_manifests.py" --name "broken-$1" --replicas 3 "$out/broken-$1.yaml" >/dev/null 2>&1; then
			bad "negative test $1: a broken manifest passed the checks"
		fi
	}
	mutate privileged 's/allowPrivilegeEscalation: false/allowPrivilegeEscalation: true/'
	mutate root-fs 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/'
	mutate probe-service 's/service: readiness/service: ""/'
	mutate not-ready-dns 's/publishNotReadyAddresses: true/publishNotReadyAddresses: false/'
	mutate parallel 's/podManagementPolicy: Parallel/podManagementPolicy: OrderedReady/'
	[ "$fail" = 0 ] && echo "validate: 5 broken manifests rejected"
fi

# --- 3: entrypoint ----------------------------------------------------------------
ep="$here/entrypoint.sh"
sh -n "$ep" || bad "entrypoint.sh: syntax"
[ -x "$ep" ] || bad "entrypoint.sh is not executable"
command -v dash >/dev/null && { dash -n "$ep" || bad "entrypoint.sh: dash syntax"; }
runep() { env -i PATH=/usr/bin:/bin STREAMBUSD_BIN=echo "$@" sh "$ep" 2>/dev/null; }
fqdn() { echo "streambus-$1.streambus-headless.ns1.svc.cluster.local:7070"; }
want="--node-id 0 --listen 0.0.0.0:7070"
got=$(runep POD_NAME=streambus-0 STREAMBUS_REPLICAS=1) || true
[ "$got" = "$want" ] || bad "entrypoint single: got '$got', want '$want'"
peers="0=$(fqdn 0),1=$(fqdn 1),2=$(fqdn 2)"
want="--node-id 2 --listen 0.0.0.0:7070 --peers $peers --log-level debug"
got=$(env -i PATH=/usr/bin:/bin STREAMBUSD_BIN=echo HOSTNAME=streambus-2 POD_NAMESPACE=ns1 STREAMBUS_REPLICAS=3 \
	sh "$ep" --log-level debug 2>/dev/null) || true
[ "$got" = "$want" ] || bad "entrypoint cluster-3: got '$got', want '$want'"
runep POD_NAME=streambus-3 POD_NAMESPACE=ns1 STREAMBUS_REPLICAS=3 >/dev/null && bad "entrypoint accepted ordinal 3 of 3"
runep POD_NAME=other-0 STREAMBUS_REPLICAS=1 >/dev/null && bad "entrypoint accepted a foreign pod name"
runep POD_NAME=streambus-1 STREAMBUS_REPLICAS=3 >/dev/null && bad "entrypoint accepted a missing POD_NAMESPACE"
[ "$fail" = 0 ] && echo "validate: entrypoint ok"

# --- 4: seccomp profile -----------------------------------------------------------
"$PY" - "$here/k8s/seccomp/streambus-uring.json" <<'PYEOF' || fail=1
import json, sys
p = json.load(open(sys.argv[1]))
allowed = {n for s in p["syscalls"] if s["action"] == "SCMP_ACT_ALLOW" and not s.get("args") for n in s["names"]}
errs = []
if p.get("defaultAction") != "SCMP_ACT_ERRNO":
    errs.append("defaultAction must be SCMP_ACT_ERRNO (allowlist)")
for n in ("io_uring_setup", "io_uring_enter", "io_uring_register", "fdatasync", "pwrite64", "epoll_wait"):
    if n not in allowed:
        errs.append(f"{n} not allowed")
for n in ("mount", "ptrace", "bpf", "unshare", "setns", "kexec_load", "init_module"):
    if n in allowed:
        errs.append(f"{n} must not be allowed")
for e in errs:
    print(f"FAIL [seccomp] {e}")
print(f"seccomp: {len(allowed)} syscalls allowed, {len(errs)} failed")
sys.exit(1 if errs else 0)
PYEOF

if [ "$fail" != 0 ]; then
	echo "validate: FAILED" >&2
	exit 1
fi
echo "validate: all checks passed"
