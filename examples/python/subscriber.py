#!/usr/bin/env python3
"""subscriber.py - follow a StreamBus partition and print its records.

    ./subscriber.py --server localhost:7070 --topic demo --partition 0 --from earliest

Prints one line per record: `OFFSET<TAB>KEY<TAB>VALUE` (bytes shown as UTF-8,
undecodable bytes as \\xNN escapes), flushing after every response so it can
be piped.

How it stays on the log:
  * One server-streaming Consume call with STOP_NEVER: the server pushes
    records as they are appended (no polling). Every ConsumeResponse carries
    next_offset, the offset after its last record: that is our position.
  * When the server goes away — it is draining (SIGTERM), restarting, or the
    connection broke — the call fails with UNAVAILABLE. A draining server
    also sends trailing metadata `streambus-next-offset: N`: the exact offset
    to resume at. We reconnect with START_OFFSET at that offset (or at the last
    next_offset we saw), so nothing is skipped or printed twice.
  * Reconnects back off exponentially (with jitter, capped by --max-backoff)
    while the server stays unreachable, and reset after a successful response.
  * Errors that retrying cannot fix end the program: NOT_FOUND (no such
    topic/partition), INVALID_ARGUMENT, OUT_OF_RANGE (the offset is not in
    the log, e.g. removed by retention: restart with --from earliest).

--count N exits after N records (handy in scripts); --until-end exits at the
end of the log as of the first request instead of following it.

Needs Debian's python3-grpcio and python3-protobuf, and the generated stubs
(./gen_stubs.sh puts them in ./gen; or set STREAMBUS_STUBS to another
directory).
"""
import argparse
import os
import random
import sys
import time

STUBS = os.environ.get("STREAMBUS_STUBS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")
sys.path.insert(0, STUBS)
try:
    import grpc
    from streambus.v1 import streambus_pb2 as pb
    from streambus.v1 import streambus_pb2_grpc as rpc
    import sbsecurity  # beside this file: --tls-ca, --tls-cert/--tls-key, --token
except ImportError as exc:
    sys.exit("subscriber.py: %s\n(generate the stubs with examples/python/gen_stubs.sh, and use a python3 "
             "that has grpcio, e.g. Debian's /usr/bin/python3)" % exc)

RESUME_KEY = "streambus-next-offset"
# Worth reconnecting for; anything else is a permanent error for this request.
#   UNAVAILABLE: server draining/restarting, connection lost;
#   RESOURCE_EXHAUSTED: too many subscribers or streams right now;
#   CANCELLED: a call the server cut off while shutting down (our own
#   cancellations never reach this handler: we return right after them).
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Follow a StreamBus partition and print its records.")
    ap.add_argument("--server", default="localhost:7070", help="HOST:PORT of a streambusd (default %(default)s)")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partition", type=int, default=0, help="partition index (default %(default)s)")
    ap.add_argument("--from", dest="start", default="latest",
                    help="earliest, latest (only new records) or an OFFSET (default %(default)s)")
    ap.add_argument("--count", type=int, default=0, help="exit after this many records (0 = never)")
    ap.add_argument("--until-end", action="store_true", help="exit at the end of the log instead of following")
    ap.add_argument("--max-backoff", type=float, default=5.0, help="longest wait between reconnects, s")
    ap.add_argument("--max-retries", type=int, default=0,
                    help="give up after this many failed reconnects in a row (0 = never)")
    sbsecurity.add_args(ap)
    args = ap.parse_args(argv)
    if args.start not in ("earliest", "latest"):
        try:
            args.start = int(args.start)
        except ValueError:
            ap.error("--from: earliest, latest or a number")
        if args.start < 0:
            ap.error("--from: an offset must be >= 0")
    return args


def show(b):
    return b.decode("utf-8", "backslashreplace").replace("\t", "\\t").replace("\n", "\\n")


def request_for(args, position):
    """The ConsumeRequest for the first call (position None) or a resumption."""
    stop = pb.STOP_AT_END if args.until_end else pb.STOP_NEVER
    common = dict(topic=args.topic, partition=args.partition, stop=stop)
    if position is not None:
        return pb.ConsumeRequest(start=pb.START_OFFSET, start_offset=position, **common)
    if args.start == "earliest":
        return pb.ConsumeRequest(start=pb.START_EARLIEST, **common)
    if args.start == "latest":
        return pb.ConsumeRequest(start=pb.START_LATEST, **common)
    return pb.ConsumeRequest(start=pb.START_OFFSET, start_offset=args.start, **common)


def main(argv=None):
    args = parse_args(argv)
    channel = sbsecurity.channel(args, options=[("grpc.keepalive_time_ms", 20000),
                                                 ("grpc.keepalive_timeout_ms", 10000)])
    stub = rpc.StreamBusStub(channel)
    # position: the next offset to read, once known (None = use --from). With
    # --from latest it stays unknown until the first response or trailer; a
    # reconnect before that starts from "latest" again.
    position = None
    printed = 0
    backoff, failures = 0.1, 0
    try:
        while True:
            call = stub.Consume(request_for(args, position))
            try:
                for resp in call:
                    for rec in resp.records:
                        print("%d\t%s\t%s" % (rec.offset, show(rec.key), show(rec.value)))
                        printed += 1
                        if args.count and printed >= args.count:
                            sys.stdout.flush()
                            call.cancel()
                            return 0
                    sys.stdout.flush()
                    position = resp.next_offset  # resume point: after the last record sent
                    backoff, failures = 0.1, 0
                return 0  # --until-end: the stream ended with OK at the end of the log
            except grpc.RpcError as e:
                code = e.code()
                if code not in RETRYABLE:
                    print("subscription failed: %s: %s" % (code.name, e.details()), file=sys.stderr)
                    return 1
                trailer = dict(e.trailing_metadata() or ()).get(RESUME_KEY)
                if trailer is not None:
                    # The server told us exactly where to resume (it is draining).
                    position = int(trailer)
                failures += 1
                if args.max_retries and failures > args.max_retries:
                    print("giving up after %d failed attempts: %s: %s" % (failures - 1, code.name, e.details()),
                          file=sys.stderr)
                    return 2
                delay = backoff * random.uniform(0.5, 1.5)  # jitter: do not reconnect in lockstep
                print("%s (%s); reconnecting in %.2fs at offset %s" % (
                    code.name, e.details(), delay, position if position is not None else args.start),
                    file=sys.stderr)
                time.sleep(delay)
                backoff = min(backoff * 2, args.max_backoff)
    except KeyboardInterrupt:
        return 130
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
