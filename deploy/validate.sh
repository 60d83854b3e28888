#!/usr/bin/env bash
# Offline validation of the StreamBus deployment files (no cluster needed):
#   1. renders every kustomize overlay (kubectl kustomize, or standalone kustomize)
#   2. checks each render with deploy/check_manifests.py (probes, securityContext,
#      PDB, Services, replicas, grace period, resources, pinned image, ...)
#   3. shell-checks deploy/entrypoint.sh and runs it with a fake streambusd to
#      verify --node-id/--peers/--listen for each overlay's replica count
#   4. checks the Localhost seccomp profile parses and allows io_uring
#   5. validates every rendered object against the Kubernetes schemas, offline
#      (deploy/schema/: kubernetes-models JSON schemas + kubernetes-types/tsc)
#   6. lints deploy/Dockerfile with dockerfile-utils and the YAML sources with
#      yamllint (deploy/schema/yamllint.yaml)
# Every check also gets deliberately broken inputs that it must reject.
# Installs kubernetes-client / python3-yaml / yamllint / nodejs+npm with apt-get
# when missing (as root); with SB_VALIDATE_NO_INSTALL=1 (CTest) it installs no
# Debian package: without kubectl or python3-yaml it skips at once (exit 77);
# without yamllint or node/npm it runs every other check and then exits 77 (a
# failure still exits 1).  The pinned npm packages of deploy/schema are
# installed with `npm ci` into deploy/schema/node_modules (gitignored) when
# missing or stale, also under CTest (SB_VALIDATE_NO_NPM=1 skips instead).
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

# Optional tools: installed when allowed, else their checks are skipped and the
# script exits 77 at the end (only if nothing failed).
deferred=()
try_install() { # package...
	[ "${SB_VALIDATE_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" -eq 0 ] || return 1
	echo "validate: installing $*" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v yamllint >/dev/null 2>&1 || try_install yamllint ||
	deferred+=("yamllint (apt-get install yamllint)")
node_ok() {
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
		node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)'
}
node_ok || { try_install nodejs npm && node_ok; } ||
	deferred+=("node >= 18 and npm (apt-get install nodejs npm)")

# deploy/schema/node_modules from the committed lockfile: `npm ci` when missing or
# when package.json/package-lock.json changed since (stamp file), then cached.
schema="$here/schema"
schema_install() {
	local stamp="$schema/node_modules/.streambus-lock.sha256" want
	want=$(cat "$schema/package.json" "$schema/package-lock.json" | sha256sum | cut -d' ' -f1)
	[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
	if [ "${SB_VALIDATE_NO_NPM:-0}" = 1 ]; then
		deferred+=("deploy/schema/node_modules (npm ci --prefix deploy/schema; SB_VALIDATE_NO_NPM=1 is set)")
		return 1
	fi
	echo "validate: npm ci --prefix deploy/schema (pinned by deploy/schema/package-lock.json; once)"
	( # one installer at a time (ctest -j, parallel hand runs)
		command -v flock >/dev/null && flock 9
		[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && exit 0
		npm ci --prefix "$schema" --ignore-scripts --no-audit --no-fund --loglevel=error >&2 &&
			echo "$want" >"$stamp"
	) 9>"$schema/.install.lock" || { bad "npm ci --prefix deploy/schema failed"; return 1; }
}
have_node=0
if node_ok && schema_install; then have_node=1; fi

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

# --- 2a: YAML syntax and style of the sources (Debian's yamllint) -----------------
ylconf="$schema/yamllint.yaml"
if command -v yamllint >/dev/null 2>&1; then
	yamllint --strict -c "$ylconf" "$here/k8s" "$ylconf" || bad "yamllint (config: deploy/schema/yamllint.yaml)"
	# negative tests: each broken copy of a source must fail with that rule
	ylbad() { # name rule file sed-expression
		sed -e "$4" "$here/k8s/$3" >"$out/yl-$1.yaml"
		if cmp -s "$here/k8s/$3" "$out/yl-$1.yaml"; then
			bad "yamllint negative test $1: the mutation changed nothing (update validate.sh)"
		elif yamllint --strict -c "$ylconf" -f parsable "$out/yl-$1.yaml" >"$out/yl-$1.out" 2>&1; then
			bad "yamllint negative test $1: a broken file passed"
		elif ! grep -q "($2)" "$out/yl-$1.out"; then
			bad "yamllint negative test $1: not rejected by rule $2: $(head -3 "$out/yl-$1.out")"
		fi
	}
	# kubectl silently keeps the last of two equal keys
	# shellcheck disable=SC2016 # a sed script, not a shell expansion
	ylbad duplicate-key key-duplicates overlays/cluster-3/replicas.yaml '$a\  replicas: 2'
	ylbad truthy truthy base/statefulset.yaml 's/readOnly: true/readOnly: yes/'
	ylbad explicit-octal octal-values base/statefulset.yaml 's/defaultMode: 0440/defaultMode: 0o440/'
	ylbad bad-indent indentation base/statefulset.yaml 's/^    type: RollingUpdate/     type: RollingUpdate/'
	ylbad tab syntax base/pdb.yaml 's/^  maxUnavailable: 1/\tmaxUnavailable: 1/'
	ylbad unclosed-flow syntax base/statefulset.yaml 's/drop: \["ALL"\]/drop: ["ALL"/'
	[ "$fail" = 0 ] && echo "validate: yamllint ok, 6 broken YAML files rejected"
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
	mutate target-port 's/targetPort: grpc/targetPort: grcp/'
	mutate port-name 's/^\( *\)name: grpc$/\1name: grpc-streaming-api/'
	[ "$fail" = 0 ] && echo "validate: 7 broken manifests rejected by check_manifests.py"
fi

# --- 5: Kubernetes schemas (offline, deploy/schema/k8s-schema.js) -------------------
# kubernetes-models rejects wrong value types, missing required fields and enum
# values; kubernetes-types + tsc rejects unknown/misspelled fields (and types,
# required fields).  Each broken copy of the cluster-3 render must be rejected by
# the check(s) named.
if [ "$have_node" = 1 ] && [ -s "$out/cluster-3.yaml" ]; then
	cases=()
	for ov in single cluster-3; do
		[ -s "$out/$ov.yaml" ] && cases+=("$ov:ok:$out/$ov.json")
	done
	nneg=0
	schema_bad() { # name expect sed-expression...
		local name=$1 expect=$2
		shift 2
		local args=()
		for e in "$@"; do args+=(-e "$e"); done
		sed "${args[@]}" "$out/cluster-3.yaml" >"$out/schema-$name.yaml"
		if cmp -s "$out/cluster-3.yaml" "$out/schema-$name.yaml"; then
			bad "schema negative test $name: the mutation changed nothing (update validate.sh)"
		else
			cases+=("$name:$expect:$out/schema-$name.json")
			nneg=$((nneg + 1))
		fi
	}
	schema_bad contianers models+types 's/^\( *\)containers:/\1contianers:/'
	schema_bad replicas-string models+types 's/^  replicas: 3$/  replicas: "three"/'
	schema_bad port-string models+types 's/containerPort: 7070/containerPort: "7070"/'
	schema_bad pull-policy-enum models 's/imagePullPolicy: IfNotPresent/imagePullPolicy: Sometimes/'
	schema_bad protocol-enum models 's/protocol: TCP/protocol: tcp/'
	schema_bad missing-service-port models+types '/^    port: 7070$/d'
	# fieldRef: null (its only key deleted): kubernetes-models allows null, tsc does not
	schema_bad null-fieldref types '/fieldPath: metadata.namespace/d'
	schema_bad missing-topologykey models+types '/topologyKey: topology.kubernetes.io\/zone/d'
	schema_bad misspelled-optional types 's/enableServiceLinks: false/enableServiceLink: false/'
	# policy/v1beta1 PDBs were removed in Kubernetes 1.25; kubernetes-models still
	# has their schemas, kubernetes-types (current APIs only) does not
	schema_bad removed-api types 's#^apiVersion: policy/v1$#apiVersion: policy/v1beta1#'
	# YAML -> JSON (the same parse kubectl does: YAML 1.1, 0440 is octal)
	if "$PY" - "${cases[@]}" <<'PYEOF'; then
import json, sys, yaml
err = 0
for case in sys.argv[1:]:
    name, _, f = case.split(":", 2)
    try:
        with open(f[:-5] + ".yaml") as y:
            docs = [d for d in yaml.safe_load_all(y) if d]
    except yaml.YAMLError as e:
        print(f"FAIL [schema {name}] YAML: {' '.join(str(e).split())}")
        err = 1
        continue
    with open(f, "w") as j:
        json.dump(docs, j)
sys.exit(err)
PYEOF
		node "$schema/k8s-schema.js" "${cases[@]}" || bad "Kubernetes schema validation"
	else
		bad "Kubernetes schema validation: YAML -> JSON"
	fi
	[ "$fail" = 0 ] && echo "validate: Kubernetes schemas ok, $nneg broken manifests rejected"
fi

# --- 6: Dockerfile lint (dockerfile-utils) ---------------------------------------
if [ "$have_node" = 1 ]; then
	node "$schema/dockerfile-lint.js" "$here/Dockerfile" || bad "Dockerfile lint"
	dfbad=()
	dockerfile_bad() { # name sed-expression
		sed -e "$2" "$here/Dockerfile" >"$out/Dockerfile.$1"
		if cmp -s "$here/Dockerfile" "$out/Dockerfile.$1"; then
			bad "Dockerfile negative test $1: the mutation changed nothing (update validate.sh)"
		else
			dfbad+=("$out/Dockerfile.$1")
		fi
	}
	dockerfile_bad unknown-instruction 's/^RUN strip /RUNN strip /'
	dockerfile_bad bad-port 's/^EXPOSE 7070 /EXPOSE 70x70 /'
	dockerfile_bad no-arguments 's/^WORKDIR \/src$/WORKDIR/'
	dockerfile_bad single-quoted-json "s/^ENTRYPOINT \[\"\(.*\)\"\]/ENTRYPOINT ['\1']/"
	dockerfile_bad bad-copy-flag 's/^COPY --from=build /COPY --form=build /'
	node "$schema/dockerfile-lint.js" --expect-errors "${dfbad[@]}" || bad "Dockerfile negative tests"
	[ "$fail" = 0 ] && echo "validate: Dockerfile lint ok, ${#dfbad[@]} broken Dockerfiles rejected"
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
if [ ${#deferred[@]} -gt 0 ]; then
	for d in "${deferred[@]}"; do
		echo "validate: SKIP: not installed: $d" >&2
	done
	echo "validate: every other check passed; exit 77 (skipped): install the above, or run deploy/validate.sh as root without SB_VALIDATE_NO_INSTALL/SB_VALIDATE_NO_NPM" >&2
	exit 77
fi
echo "validate: all checks passed"
