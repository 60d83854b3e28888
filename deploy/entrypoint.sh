#!/bin/sh
# streambus-entrypoint - starts streambusd inside a Kubernetes StatefulSet.
#
# Derives the node identity from the pod name and the cluster membership from
# the replica count, then execs streambusd (so it is PID 1 and gets SIGTERM):
#
#   pod streambus-N          -> --node-id N
#   STREAMBUS_REPLICAS=R>1   -> --peers "0=streambus-0.<svc>.<ns>.svc.<domain>:<port>,...,R-1=..."
#   STREAMBUS_REPLICAS=1     -> no --peers (single node)
#   always                   -> --listen 0.0.0.0:<port>
#
# With the default --leader-id -1 the lowest id (pod 0) leads a fresh cluster;
# afterwards the leader and epoch persist in <data-dir>/cluster.state.
#
# Inputs (environment; read by this wrapper only, streambusd ignores them):
#   POD_NAME                  pod name (downward API); falls back to $HOSTNAME
#   POD_NAMESPACE             namespace (downward API), required when R > 1
#   STREAMBUS_REPLICAS        StatefulSet replica count (default 1)
#   STREAMBUS_STATEFULSET     StatefulSet name (default streambus)
#   STREAMBUS_HEADLESS_SERVICE governing headless Service (default streambus-headless)
#   STREAMBUS_CLUSTER_DOMAIN  cluster DNS domain (default cluster.local)
#   STREAMBUS_PORT            gRPC port (default 7070)
#   STREAMBUSD_BIN            server binary (default /usr/local/bin/streambusd)
# Every other STREAMBUS_* variable is a streambusd setting and passes through.
# Extra arguments are appended to the streambusd command line (flags win over env).
set -eu

die() {
	echo "streambus-entrypoint: $*" >&2
	exit 64
}

is_uint() {
	case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac
}

pod=${POD_NAME:-${HOSTNAME:-}}
sts=${STREAMBUS_STATEFULSET:-streambus}
replicas=${STREAMBUS_REPLICAS:-1}
svc=${STREAMBUS_HEADLESS_SERVICE:-streambus-headless}
domain=${STREAMBUS_CLUSTER_DOMAIN:-cluster.local}
port=${STREAMBUS_PORT:-7070}
bin=${STREAMBUSD_BIN:-/usr/local/bin/streambusd}

[ -n "$pod" ] || die "neither POD_NAME nor HOSTNAME is set"
case "$pod" in
"$sts"-*) ordinal=${pod#"$sts"-} ;;
*) die "pod name \"$pod\" is not \"$sts-<ordinal>\" (set STREAMBUS_STATEFULSET?)" ;;
esac
is_uint "$ordinal" || die "pod name \"$pod\" has no numeric ordinal"
is_uint "$replicas" && [ "$replicas" -ge 1 ] || die "STREAMBUS_REPLICAS=\"$replicas\" is not a positive integer"
is_uint "$port" || die "STREAMBUS_PORT=\"$port\" is not a port"
[ "$replicas" -le 1024 ] || die "STREAMBUS_REPLICAS=$replicas exceeds 1024 node ids"
[ "$ordinal" -lt "$replicas" ] ||
	die "ordinal $ordinal >= STREAMBUS_REPLICAS=$replicas: peers are fixed at start; update STREAMBUS_REPLICAS with the replica count and restart every pod"

if [ "$replicas" -gt 1 ]; then
	ns=${POD_NAMESPACE:-}
	[ -n "$ns" ] || die "POD_NAMESPACE is not set (needed to build --peers)"
	peers=""
	i=0
	while [ "$i" -lt "$replicas" ]; do
		peers="$peers${peers:+,}$i=$sts-$i.$svc.$ns.svc.$domain:$port"
		i=$((i + 1))
	done
	set -- --peers "$peers" "$@"
fi
set -- --node-id "$ordinal" --listen "0.0.0.0:$port" "$@"

echo "streambus-entrypoint: exec $bin $*" >&2
exec "$bin" "$@"
