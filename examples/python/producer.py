#!/usr/bin/env python3
"""producer.py - send lines from stdin to a StreamBus topic.

    printf 'hello\\nworld\\n' | ./producer.py --server localhost:7070 --topic demo

Each input line (without its newline) becomes one record's value; with
--key-separator SEP the part before the first SEP becomes the record key
(records with the same key always land on the same partition when
--partition is -1). Up to --batch lines go into one ProduceRequest.

How it talks to the server:
  * ONE bidirectional Produce stream carries every request (no per-request
    round trip). Requests are pipelined: up to --window of them may be
    unanswered at once; the generator that feeds gRPC blocks when the window
    is full and each response opens one slot again. The server also stops
    reading past its own --max-inflight-per-stream, so a too-large window
    only costs memory here.
  * The server answers every request exactly once, in request order, each
    response carrying the request_id we chose. A response with error_code != 0
    means that request was NOT appended (and says why); the stream carries on
    with the next request, so we report it and keep going.
  * --acks none: the server answers only failed requests, so there is no
    window to manage (HTTP/2 flow control still pushes back) and a success
    is never confirmed.

For every acknowledged record it prints `PARTITION OFFSET` on stdout;
errors and the summary go to stderr. Exit status: 0 if every request was
acknowledged, 1 if some were refused, 2 if the stream itself failed (the
lines not acknowledged may or may not have been appended: re-send them
if duplicates are acceptable).

Needs Debian's python3-grpcio and python3-protobuf, and the generated stubs
(./gen_stubs.sh puts them in ./gen; or set STREAMBUS_STUBS to another
directory).
"""
import argparse
import os
import sys
import threading

STUBS = os.environ.get("STREAMBUS_STUBS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")
sys.path.insert(0, STUBS)
try:
    import grpc
    from streambus.v1 import streambus_pb2 as pb
    from streambus.v1 import streambus_pb2_grpc as rpc
    import sbsecurity  # beside this file: --tls-ca, --tls-cert/--tls-key, --token
except ImportError as exc:
    sys.exit("producer.py: %s\n(generate the stubs with examples/python/gen_stubs.sh, and use a python3 "
             "that has grpcio, e.g. Debian's /usr/bin/python3)" % exc)

ACKS = {"leader": pb.ACKS_LEADER, "none": pb.ACKS_NONE, "all": pb.ACKS_ALL}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Produce lines from stdin to a StreamBus topic.")
    ap.add_argument("--server", default="localhost:7070", help="HOST:PORT of a streambusd (default %(default)s)")
    ap.add_argument("--topic", required=True, help="topic to write to (it must exist)")
    ap.add_argument("--partition", type=int, default=-1,
                    help="partition index, or -1 to let the server pick: by key hash, else round robin "
                         "(default %(default)s)")
    ap.add_argument("--acks", choices=sorted(ACKS), default="leader",
                    help="leader: durable on the server per the topic's fsync policy; all: also on every "
                         "in-sync replica; none: fire and forget (default %(default)s)")
    ap.add_argument("--batch", type=int, default=1, help="lines per ProduceRequest (default %(default)s)")
    ap.add_argument("--window", type=int, default=32,
                    help="unanswered requests allowed on the stream (default %(default)s)")
    ap.add_argument("--key-separator", default=None,
                    help="split each line at the first SEP into key and value (default: no key)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds for the whole stream (default: none)")
    ap.add_argument("--create", type=int, metavar="PARTITIONS", default=0,
                    help="create the topic with this many partitions first if it does not exist")
    sbsecurity.add_args(ap)
    args = ap.parse_args(argv)
    if args.batch < 1 or args.window < 1:
        ap.error("--batch and --window must be >= 1")
    return args


def to_record(line, sep):
    """One input line (bytes, newline stripped) -> a Record."""
    if sep is not None and sep in line:
        key, value = line.split(sep, 1)
        return pb.Record(key=key, value=value)
    return pb.Record(value=line)  # timestamp_ms 0: the server stamps its own time


class Pipeline:
    """Feeds requests to the stream while at most `window` are unanswered and
    remembers which lines each outstanding request carries."""

    def __init__(self, args):
        self.args = args
        self.sep = args.key_separator.encode() if args.key_separator is not None else None
        self.window = threading.Semaphore(args.window)
        self.lock = threading.Lock()
        self.pending = {}            # request_id -> (first line number, records)
        self.stopped = threading.Event()
        self.sent_records = 0
        self.uses_window = args.acks != "none"  # ACKS_NONE: no responses to open the window

    def requests(self):
        """Generator gRPC pulls from (on its own thread): reads stdin lazily."""
        batch, first_line, request_id = [], 1, 0
        for n, raw in enumerate(sys.stdin.buffer, start=1):
            if not batch:
                first_line = n
            batch.append(to_record(raw.rstrip(b"\r\n"), self.sep))
            if len(batch) == self.args.batch:
                if not self._admit(request_id, first_line, batch):
                    return
                yield self._request(request_id, batch)
                request_id, batch = request_id + 1, []
        if batch and self._admit(request_id, first_line, batch):
            yield self._request(request_id, batch)
        # returning ends our side of the stream (half-close): the server answers
        # what is outstanding and then ends the call with OK

    def _admit(self, request_id, first_line, batch):
        if self.uses_window:
            # Block while the window is full; give up if the stream has ended.
            while not self.window.acquire(timeout=0.2):
                if self.stopped.is_set():
                    return False
        if self.stopped.is_set():
            return False
        with self.lock:
            if self.uses_window:  # (with acks=none most requests are never answered: keep nothing)
                self.pending[request_id] = (first_line, len(batch))
            self.sent_records += len(batch)
        return True

    def _request(self, request_id, batch):
        return pb.ProduceRequest(request_id=request_id, topic=self.args.topic, partition=self.args.partition,
                                 records=batch, acks=ACKS[self.args.acks])

    def answered(self, resp):
        """Bookkeeping for one response; returns (first_line, count) or None."""
        if not self.uses_window:
            # acks=none: only refusals are answered; request n carries lines n*batch+1...
            return (resp.request_id * self.args.batch + 1, self.args.batch)
        with self.lock:
            entry = self.pending.pop(resp.request_id, None)
        self.window.release()
        return entry


def main(argv=None):
    args = parse_args(argv)
    # Keepalive pings let a long-lived stream notice a dead connection; the
    # server allows a ping every 5 s.
    channel = sbsecurity.channel(args, options=[("grpc.keepalive_time_ms", 20000),
                                                 ("grpc.keepalive_timeout_ms", 10000)])
    stub = rpc.StreamBusStub(channel)
    if args.create:
        try:
            rpc.AdminStub(channel).CreateTopic(pb.CreateTopicRequest(name=args.topic, partitions=args.create),
                                               timeout=30)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                print("cannot create topic %s: %s: %s" % (args.topic, e.code().name, e.details()), file=sys.stderr)
                return 2
    pipe = Pipeline(args)
    acked = failed = 0
    status = 0
    try:
        responses = stub.Produce(pipe.requests(), timeout=args.timeout)
        for resp in responses:
            entry = pipe.answered(resp)
            if entry is None:
                print("warning: response for unknown request_id %d (error_code %d: %s)"
                      % (resp.request_id, resp.error_code, resp.error_message), file=sys.stderr)
                failed += 1
                status = 1
                continue
            first_line, count = entry
            if resp.error_code != 0:
                # Refused: nothing of this request was appended. error_code is a
                # gRPC status code (3 INVALID_ARGUMENT, 5 NOT_FOUND, 8
                # RESOURCE_EXHAUSTED: retry later, 14 UNAVAILABLE: retry/reconnect).
                name = next((c.name for c in grpc.StatusCode if c.value[0] == resp.error_code), "?")
                print("lines %d-%d refused: %s (%d): %s" % (first_line, first_line + count - 1, name,
                                                            resp.error_code, resp.error_message), file=sys.stderr)
                failed += count
                status = 1
                continue
            for k in range(count):  # records of one request are consecutive
                print("%d %d" % (resp.partition, resp.base_offset + k))
            acked += count
            sys.stdout.flush()
    except grpc.RpcError as e:
        # The stream failed as a whole (server down or draining, message too
        # large, ...): requests still pending have an unknown outcome.
        with pipe.lock:
            unknown = sum(n for _, n in pipe.pending.values())
        print("stream failed: %s: %s (%d records unconfirmed)" % (e.code().name, e.details(), unknown),
              file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        status = 2
    finally:
        pipe.stopped.set()
        channel.close()
    if args.acks == "none":
        print("sent %d records with acks=none (%d refused; successes are not confirmed)"
              % (pipe.sent_records, failed), file=sys.stderr)
    else:
        print("%d records acknowledged, %d refused" % (acked, failed), file=sys.stderr)
    return status


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit, not sys.exit: gRPC's request thread may still be blocked reading
    # stdin, and interpreter shutdown would then abort on the stdin buffer lock.
    os._exit(code or 0)
