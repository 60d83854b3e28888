#!/usr/bin/env bash
# bench/service.sh - the gRPC server benchmark (issue: gRPC API and server):
# runs `streambus bench` against a fresh single-node streambusd on 127.0.0.1
# (Release build) and prints one table with medians of --reps runs:
#   1. produce: record size 100 B / 1 KiB x records per request 1/100/1000 x
#      window 1/16/64 x 1/4 streams, acks LEADER, fsync never and always
#      (--quick: the cells the targets need);
#   2. ack latency of 1 record per request, window 1, fsync always, at a fixed
#      offered rate, beside the raw fdatasync p50 of the same disk (from
#      bench_storage's baseline section);
#   3. consume of one stream from the start of a --consume-records topic;
#   4. tail-follow produce->consume latency at 50% of the measured maximum.
# Usage: bench/service.sh [--reps N] [--quick] [--consume-records N]
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=3
QUICK=0
CONSUME_RECORDS=10000000
while [ $# -gt 0 ]; do
	case "$1" in
	--reps) REPS=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--consume-records) CONSUME_RECORDS=$2; shift 2 ;;
	*) echo "usage: $0 [--reps N] [--quick] [--consume-records N]" >&2; exit 2 ;;
	esac
done

BUILD=${BUILD_DIR:-build}
if [ ! -x "$BUILD/streambusd" ] || [ ! -x "$BUILD/streambus" ] || [ ! -x "$BUILD/bench_storage" ]; then
	cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$BUILD" -j"$(nproc)" --target streambusd streambus bench_storage >/dev/null
fi
D="$BUILD/streambusd"
C="$BUILD/streambus"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sb-service-bench.XXXXXX")
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
S="127.0.0.1:$PORT"
"$D" --listen "$S" --data-dir "$WORK/data" --log-level warn --consume-max-bytes 4194304 \
	--max-inflight-per-stream 1024 >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 200); do "$C" --server "$S" --timeout 1 health >/dev/null 2>&1 && break; sleep 0.05; done

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
num() { sed -n "s/.*$1 *\([0-9.]*\).*/\1/p" | head -1; }
CELL=0
bench() { # args...: prints the bench output of one run on a fresh topic
	CELL=$((CELL + 1))
	"$C" --server "$S" bench --topic "t$CELL" "$@" 2>/dev/null
}

echo "StreamBus service benchmark: streambusd on $S, medians of $REPS runs"
echo
echo "1. Produce (acks leader), records/s and MB/s of values; ack p50/p99 in ms"
printf "  %-6s %6s %6s %6s %7s %12s %9s %8s %8s\n" fsync size batch window streams records/s MB/s p50 p99
if [ "$QUICK" = 1 ]; then
	CELLS="never:100:100:64:1 always:100:100:64:1 always:100:100:64:4 never:1024:100:16:1 always:100:1:1:1"
else
	CELLS=""
	for f in never always; do for sz in 100 1024; do for b in 1 100 1000; do for w in 1 16 64; do for st in 1 4; do
		CELLS="$CELLS $f:$sz:$b:$w:$st"
	done; done; done; done; done
fi
declare -A RPS P50
for cell in $CELLS; do
	IFS=: read -r f sz b w st <<<"$cell"
	n=$((b * w * st * 200)); [ $n -gt 2000000 ] && n=2000000; [ $n -lt 2000 ] && n=2000
	rs=(); ps50=(); ps99=()
	for _ in $(seq "$REPS"); do
		out=$(bench --records "$n" --record-size "$sz" --batch "$b" --window "$w" --streams "$st" --fsync "$f")
		rs+=("$(echo "$out" | num "throughput:")")
		ps50+=("$(echo "$out" | sed -n 's/.*p50 \([0-9.]*\) ms.*/\1/p' | head -1)")
		ps99+=("$(echo "$out" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' | head -1)")
	done
	r=$(printf '%s\n' "${rs[@]}" | median); p50=$(printf '%s\n' "${ps50[@]}" | median)
	p99=$(printf '%s\n' "${ps99[@]}" | median)
	RPS[$cell]=$r
	P50[$cell]=$p50
	printf "  %-6s %6s %6s %6s %7s %12.0f %9.1f %8s %8s\n" "$f" "$sz" "$b" "$w" "$st" "$r" \
		"$(echo "$r * $sz / 1000000" | bc -l)" "$p50" "$p99"
done

echo
echo "2. Ack latency, 1 record per request, window 1, fsync always: closed loop (table above) and at 500 requests/s"
lat=(); for _ in $(seq "$REPS"); do
	lat+=("$(bench --records 3000 --record-size 100 --batch 1 --window 1 --fsync always --rate 500 |
		sed -n 's/.*p50 \([0-9.]*\) ms.*/\1/p' | head -1)")
done
ACK_P50=$(printf '%s\n' "${lat[@]}" | median)
FS_P50=$("$BUILD/bench_storage" --only baselines --reps "$REPS" --dir "$WORK" 2>/dev/null |
	sed -n 's/.*fdatasync after 4 KiB append.*p50 \([0-9.]*\) us.*/\1/p')
CLOSED_P50="${P50[always:100:1:1:1]:-nan}"
printf "  closed loop p50 %s ms; at 500/s p50 %.3f ms (includes waking idle threads); raw fdatasync p50 %.1f us (bench_storage, same disk)\n" \
	"$CLOSED_P50" "$ACK_P50" "$FS_P50"

echo
echo "3. Consume one stream from the start of a $CONSUME_RECORDS-record topic (100 B records)"
"$C" --server "$S" bench --topic consume --records "$CONSUME_RECORDS" --record-size 100 --batch 1000 \
	--window 16 --fsync never >/dev/null 2>&1
cs=(); for _ in $(seq "$REPS"); do
	cs+=("$("$C" --server "$S" bench --topic consume --consume 2>/dev/null | num "throughput:")")
done
CONSUME=$(printf '%s\n' "${cs[@]}" | median)
printf "  %.0f records/s\n" "$CONSUME"

echo
MAX1=$(bench --records 200000 --record-size 100 --batch 1 --window 64 --fsync never | num "throughput:")
HALF=$(echo "$MAX1 / 2" | bc)
echo "4. Tail-follow produce->consume latency at 50% of the maximum 1-record-per-request rate ($HALF records/s)"
e2=(); for _ in $(seq "$REPS"); do
	e2+=("$(bench --e2e --rate "$HALF" --records $((HALF * 3)) --batch 1 --window 64 --fsync never |
		sed -n '/end-to-end/s/.*p99 \([0-9.]*\) ms.*/\1/p' | head -1)")
done
E2E_P99=$(printf '%s\n' "${e2[@]}" | median)
printf "  p99 %s ms\n" "$E2E_P99"

echo
echo "Targets"
verdict() { if [ "$(echo "$1" | bc -l 2>/dev/null)" = 1 ]; then echo PASS; else echo FAIL; fi; }
A="${RPS[always:100:100:64:1]:-nan}"
printf "  [%s] produce 100 x 100 B, 64 in flight, fsync always   %10.0f records/s (target >= 2000000)\n" \
	"$(verdict "$A >= 2000000")" "$A"
printf "  [%s] consume one stream from the start            %10.0f records/s (target >= 4000000)\n" \
	"$(verdict "$CONSUME >= 4000000")" "$CONSUME"
printf "  [%s] ack p50 (window 1) <= fdatasync p50 + 150 us    %7.3f ms vs %.3f ms\n" \
	"$(verdict "$CLOSED_P50 * 1000 <= $FS_P50 + 150")" "$CLOSED_P50" "$(echo "($FS_P50 + 150) / 1000" | bc -l)"
printf "  [%s] tail-follow p99 < 2 ms at 50%% load             %7s ms\n" "$(verdict "$E2E_P99 < 2")" "$E2E_P99"
