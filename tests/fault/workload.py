"""Workload clients (Debian's grpcio) that record what they do into a History.

Producer: one bidirectional Produce stream at a time with up to `window` requests in
  flight; every request is an op (invoke -> ok/fail/unknown) naming its payload ids.
  After a stream error every unanswered request is `unknown`, and it reconnects.
Consumer: follows one partition with Consume STOP_NEVER; every response is a read op;
  after an error it reconnects and resumes at START_OFFSET = the offset after the last
  record it got.
final_read: everything of each partition with STOP_AT_END, for history.check().
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import grpc  # noqa: E402
from sbtest import pb, rpc  # noqa: E402

import history as hist  # noqa: E402

LEADER_MD = "streambus-leader"


def _address(target):
    return target if isinstance(target, str) else target.addr


def _connect(addr, timeout=1.0):
    """A channel to addr once it is ready, or None (server down)."""
    ch = grpc.insecure_channel(addr)
    try:
        grpc.channel_ready_future(ch).result(timeout=timeout)
        return ch
    except grpc.FutureTimeoutError:
        ch.close()
        return None


def _leader_of(err):
    try:
        return dict(err.trailing_metadata() or ()).get(LEADER_MD)
    except Exception:  # noqa: BLE001
        return None


class Producer(threading.Thread):
    """Produces to partitions round robin: records_per_request records of value_size bytes.

    invalid_every=N makes every Nth request invalid (acks value 7: INVALID_ARGUMENT, a
    definite failure) so the checker can confirm failed payloads never appear.
    follow_leader: on UNAVAILABLE with streambus-leader metadata, switch to that address.
    error_backoff: seconds to wait after an error response before the next request goes out
    (0: none), so a server that refuses everything is not flooded."""

    def __init__(self, target, history, topic, partitions, client=0, acks=pb.ACKS_LEADER,
                 records_per_request=10, value_size=100, window=8, invalid_every=0, pause=0.0,
                 follow_leader=True, error_backoff=0.0):
        super().__init__(daemon=True, name="producer%d" % client)
        if acks == pb.ACKS_NONE:
            raise ValueError("ACKS_NONE gets no responses: nothing to record (use ACKS_LEADER or ACKS_ALL)")
        self.addr, self.h, self.topic = _address(target), history, topic
        self.partitions = list(range(partitions)) if isinstance(partitions, int) else list(partitions)
        self.client, self.process = client, "producer%d" % client
        self.acks, self.rpr, self.value_size = acks, records_per_request, value_size
        self.window, self.invalid_every, self.pause = window, invalid_every, pause
        self.follow_leader = follow_leader
        self.error_backoff = error_backoff
        self.halt = threading.Event()
        self.seq = self.requests = 0
        self.stats = {"ok": 0, "fail": 0, "unknown": 0, "sessions": 0, "stray_responses": 0}
        self._stat_lock = threading.Lock()

    def _count(self, what, n=1):
        with self._stat_lock:
            self.stats[what] += n

    def acked(self):
        return self.stats["ok"]

    def stop(self, timeout=30):
        self.halt.set()
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError("producer did not stop")

    def _next_request(self):
        """Builds the next request and invokes its op (payload ids and sizes in the history)."""
        self.requests += 1
        part = self.partitions[self.requests % len(self.partitions)]
        payloads, records = [], []
        for _ in range(self.rpr):
            self.seq += 1
            pid = "p%d-%d" % (self.client, self.seq)
            payloads.append([pid, self.value_size])
            records.append(pb.Record(value=hist.make_value(pid, self.value_size)))
        acks = self.acks
        if self.invalid_every and self.requests % self.invalid_every == 0:
            acks = 7  # not an Acks value: rejected before anything is written
        op = self.h.invoke(self.process, "produce", topic=self.topic, partition=part, payloads=payloads,
                           acks=int(acks))
        return pb.ProduceRequest(request_id=op, topic=self.topic, partition=part, records=records,
                                 acks=acks), op

    def run(self):
        while not self.halt.is_set():
            ch = _connect(self.addr)
            if ch is None:
                continue
            try:
                self._session(ch)
            finally:
                ch.close()

    def _session(self, ch):
        self._count("sessions")
        pending = {}  # request_id -> op id (responses come in request order)
        lock = threading.Lock()
        slots = threading.Semaphore(self.window)
        dead = threading.Event()

        def requests():
            while not self.halt.is_set() and not dead.is_set():
                if not slots.acquire(timeout=0.1):
                    continue
                with lock:
                    if dead.is_set():
                        return
                    req, op = self._next_request()
                    pending[req.request_id] = op
                yield req
                if self.pause:
                    time.sleep(self.pause)

        code, msg = None, "stream ended without answering"
        call = rpc.StreamBusStub(ch).Produce(requests())
        try:
            for r in call:
                with lock:
                    op = pending.pop(r.request_id, None)
                if op is None:
                    self._count("stray_responses")
                    continue
                if r.error_code == 0:
                    self.h.ok(op, offset=r.base_offset)
                    self._count("ok")
                else:
                    self.h.error(op, r.error_code, r.error_message)
                    self._count("fail" if r.error_code in hist.DEFINITE_FAILURES else "unknown")
                    if self.error_backoff:
                        time.sleep(self.error_backoff)  # e.g. a failed log: do not spin
                slots.release()
        except grpc.RpcError as e:
            code, msg = e.code(), e.details() or ""
            leader = _leader_of(e) if self.follow_leader else None
            if leader and code == grpc.StatusCode.UNAVAILABLE:
                self.addr = leader
        finally:
            with lock:
                dead.set()
                for op in pending.values():
                    self.h.unknown(op, code, "no response: " + msg)
                self._count("unknown", len(pending))
                pending.clear()
            call.cancel()


class Consumer(threading.Thread):
    """Follows one partition from offset 0 (STOP_NEVER), resuming after every error."""

    def __init__(self, target, history, topic, partition, client=0):
        super().__init__(daemon=True, name="consumer%d-%d" % (client, partition))
        self.addr, self.h, self.topic, self.partition = _address(target), history, topic, partition
        self.process = "consumer%d" % client
        self.stream = "%s/%s/%d" % (self.process, topic, partition)
        self.next_offset = 0
        self.halt = threading.Event()
        self.stats = {"records": 0, "sessions": 0, "errors": 0}
        self._call = None

    def stop(self, timeout=30):
        self.halt.set()
        call = self._call
        if call is not None:
            call.cancel()
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError("consumer did not stop")

    def run(self):
        while not self.halt.is_set():
            ch = _connect(self.addr)
            if ch is None:
                continue
            try:
                self._session(ch)
            finally:
                ch.close()

    def _session(self, ch):
        self.stats["sessions"] += 1
        start = self.next_offset
        req = pb.ConsumeRequest(topic=self.topic, partition=self.partition, start=pb.START_OFFSET,
                                start_offset=start, stop=pb.STOP_NEVER)
        self._call = call = rpc.StreamBusStub(ch).Consume(req)
        if self.halt.is_set():
            call.cancel()
        try:
            for resp in call:
                if resp.records:
                    self.h.read(self.process, self.stream, self.topic, self.partition, start,
                                [(r.offset, r.value) for r in resp.records])
                    self.next_offset = resp.records[-1].offset + 1
                    self.stats["records"] += len(resp.records)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.stats["errors"] += 1
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    time.sleep(0.1)  # e.g. OUT_OF_RANGE: do not spin


def final_read(target, topic, partitions, timeout=60, missing_ok=False):
    """{(topic, partition): [(offset, value), ...]} of everything up to the end, for check().
    missing_ok: a topic or partition the server does not know (NOT_FOUND, e.g. its directory
    was lost) reads as empty instead of raising."""
    parts = range(partitions) if isinstance(partitions, int) else partitions
    ch = _connect(_address(target), timeout=10)
    if ch is None:
        raise RuntimeError("final read: %s is not serving" % _address(target))
    try:
        stub = rpc.StreamBusStub(ch)
        out = {}
        for p in parts:
            recs = []
            req = pb.ConsumeRequest(topic=topic, partition=p, start=pb.START_EARLIEST, stop=pb.STOP_AT_END)
            try:
                for resp in stub.Consume(req, timeout=timeout):
                    recs.extend((r.offset, r.value) for r in resp.records)
            except grpc.RpcError as e:
                if not (missing_ok and e.code() == grpc.StatusCode.NOT_FOUND):
                    raise
                recs = []
            out[(topic, p)] = recs
        return out
    finally:
        ch.close()
