#!/usr/bin/env bash
# bench/replication.sh - replication benchmark (issue: replication): a
# 3-node cluster on 127.0.0.1 (Release build), measuring in the same run
#   1. produce throughput and ack latency with ACKS_LEADER and ACKS_ALL
#      (fsync always, 100 x 100 B per request, window 16), alternating
#      runs, medians and their ratios;
#   2. catch-up: a follower whose data directory was wiped rejoins and
#      copies the leader's log; MB/s from its start until its log end
#      equals the leader's.
# Usage: bench/replication.sh [--reps N] [--records N] [--catchup-mb MB]
# Prints a table and the targets of the issue. Not a timed test.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=3
RECORDS=300000
CATCHUP_MB=512
while [ $# -gt 0 ]; do
	case "$1" in
	--reps) REPS=$2; shift 2 ;;
	--records) RECORDS=$2; shift 2 ;;
	--catchup-mb) CATCHUP_MB=$2; shift 2 ;;
	*) echo "usage: $0 [--reps N] [--records N] [--catchup-mb MB]" >&2; exit 2 ;;
	esac
done

BUILD=${BUILD_DIR:-build}
if [ ! -x "$BUILD/streambusd" ] || [ ! -x "$BUILD/streambus" ]; then
	cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$BUILD" -j"$(nproc)" --target streambusd streambus >/dev/null
fi
D="$BUILD/streambusd"
C="$BUILD/streambus"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sb-repl-bench.XXXXXX")
PIDS=()

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P0=$(free_port); P1=$(free_port); P2=$(free_port)
PORTS=("$P0" "$P1" "$P2")
PEERS="0=127.0.0.1:$P0,1=127.0.0.1:$P1,2=127.0.0.1:$P2"

start_node() { # id
	"$D" --node-id "$1" --peers "$PEERS" --listen "127.0.0.1:${PORTS[$1]}" --data-dir "$WORK/n$1" \
		--log-level warn >>"$WORK/log$1" 2>&1 &
	PIDS[$1]=$!
	for _ in $(seq 200); do
		"$C" --server "127.0.0.1:${PORTS[$1]}" --timeout 1 health >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "node $1 did not start; log:" >&2; tail -20 "$WORK/log$1" >&2; return 1
}
stop_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap 'stop_all; rm -rf "$WORK"' EXIT

for i in 0 1 2; do start_node $i; done
LEADER="127.0.0.1:$P0"
sleep 0.5 # followers connect

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
field() { # regex -> first number after it
	sed -n "s/.*$1 *\([0-9.]*\).*/\1/p" | head -1
}

echo "StreamBus replication benchmark: 3 nodes on 127.0.0.1, $REPS reps of $RECORDS records (100 B, 100 per request, window 16, fsync always)"
: >"$WORK/leader.txt"; : >"$WORK/all.txt"
for r in $(seq "$REPS"); do
	for acks in leader all; do
		out=$("$C" --server "$LEADER" bench --topic "b-$acks-$r" --records "$RECORDS" --acks "$acks" \
			--fsync always --window 16 --batch 100 2>/dev/null)
		rps=$(echo "$out" | field "throughput:")
		p99=$(echo "$out" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' | head -1)
		echo "$rps $p99" >>"$WORK/$acks.txt"
		printf "  run %d acks=%-6s %10.0f records/s  p99 %6.3f ms\n" "$r" "$acks" "$rps" "$p99" >&2
	done
done
L_RPS=$(cut -d' ' -f1 "$WORK/leader.txt" | median); L_P99=$(cut -d' ' -f2 "$WORK/leader.txt" | median)
A_RPS=$(cut -d' ' -f1 "$WORK/all.txt" | median); A_P99=$(cut -d' ' -f2 "$WORK/all.txt" | median)
echo
echo "1. Produce through the leader (medians)"
printf "  ACKS_LEADER  %10.0f records/s   ack p99 %7.3f ms\n" "$L_RPS" "$L_P99"
printf "  ACKS_ALL     %10.0f records/s   ack p99 %7.3f ms\n" "$A_RPS" "$A_P99"

# ---- catch-up ----
"$C" --server "$LEADER" topic create catchup --segment-bytes 64m --fsync never >/dev/null
kill "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true
rm -rf "$WORK/n2"
RECS=$((CATCHUP_MB * 1000000 / 1000))
"$C" --server "$LEADER" bench --topic catchup --records "$RECS" --record-size 1000 --batch 100 --window 16 \
	--acks leader >/dev/null 2>&1
leader_end() { "$C" --server "127.0.0.1:${PORTS[$1]}" --timeout 2 topic describe catchup 2>/dev/null | awk '$1=="0"{print $3}'; }
END0=$(leader_end 0)
BYTES=$(du -sb "$WORK/n0/topics/catchup" | cut -f1)
T0=$(date +%s.%N)
start_node 2
until [ "$(leader_end 2 || echo -1)" = "$END0" ]; do sleep 0.02; done
T1=$(date +%s.%N)
SECS=$(echo "$T1 - $T0" | bc -l)
MBPS=$(echo "$BYTES / 1000000 / $SECS" | bc -l)
echo
echo "2. Catch-up of a wiped follower (node 2; includes its start-up)"
printf "  %.0f MB in %.2f s: %.0f MB/s\n" "$(echo "$BYTES/1000000" | bc -l)" "$SECS" "$MBPS"
if cmp -s <(cat "$WORK"/n0/topics/catchup/0/*.log) <(cat "$WORK"/n2/topics/catchup/0/*.log); then
	echo "  segment files byte-identical: yes"
else
	echo "  segment files byte-identical: NO"
fi

echo
echo "Targets"
verdict() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo PASS; else echo FAIL; fi; }
printf "  [%s] ACKS_ALL / ACKS_LEADER throughput  %5.2f  (target >= 0.50)\n" \
	"$(verdict "$A_RPS / $L_RPS >= 0.5")" "$(echo "$A_RPS / $L_RPS" | bc -l)"
printf "  [%s] ACKS_ALL p99 / ACKS_LEADER p99     %5.2f  (target <= 3.00)\n" \
	"$(verdict "$A_P99 / $L_P99 <= 3")" "$(echo "$A_P99 / $L_P99" | bc -l)"
printf "  [%s] catch-up                         %6.0f MB/s  (target >= 300)\n" \
	"$(verdict "$MBPS >= 300")" "$MBPS"
