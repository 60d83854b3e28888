"""Integration tests of the public API against the real streambusd, from a
client in another language (Debian's Python grpcio).

Covers: byte-exact round trips, ordering under pipelining, concurrent
producers and tail-following subscribers, tail latency, resume from
next_offset, start positions, Fetch bounds and offsets, the exact status code
of every kind of bad input (RELIABILITY.md rule 7: garbage and truncated
protobuf, oversize messages, bad names, offsets, unknown topics, partitions
and methods, stream/subscriber limits), that the server survives all of it
(also many rejected calls at once), acks levels, partition -1, the Admin
service (including deleting a topic that has subscribers) and Health.

Run by CTest (it_test_api) with STREAMBUSD, SB_PY and SB_TEST_TMP set.
Each test starts its own server (a few tens of ms) so a failure in one cannot
leak into the next; Server.__exit__ fails the test on a non-zero exit status
or a sanitizer report in the server's log.
"""
import os
import queue
import threading
import time

import sbtest
from sbtest import expect_code, pb, produce, run_tests, server

import grpc
import health_pb2

SC = grpc.StatusCode
# ProduceResponse.error_code carries the numeric gRPC code.
CODE_NUM = {c: c.value[0] for c in SC}


# ---------------------------------------------------------------- helpers

def create(server, name, partitions=1, **config):
    """Creates a topic; config keys are TopicConfig fields."""
    server.admin.CreateTopic(pb.CreateTopicRequest(
        name=name, partitions=partitions, config=pb.TopicConfig(**config) if config else None))


def produce_pipelined(stub, requests, window=32, timeout=120, stats=None):
    """Sends requests on ONE Produce stream with at most `window` unanswered at
    a time (the generator blocks on a semaphore the response loop releases);
    returns the responses. stats (dict) gets max_inflight."""
    sem = threading.Semaphore(window)
    lock = threading.Lock()
    inflight = [0, 0]  # current, max
    stop = threading.Event()

    def gen():
        for r in requests:
            while not sem.acquire(timeout=0.1):
                if stop.is_set():
                    return
            with lock:
                inflight[0] += 1
                inflight[1] = max(inflight[1], inflight[0])
            yield r

    out = []
    call = stub.Produce(gen(), timeout=timeout)
    try:
        for resp in call:
            out.append(resp)
            with lock:
                inflight[0] -= 1
            sem.release()
    finally:
        stop.set()
    if stats is not None:
        stats["max_inflight"] = inflight[1]
    return out


def consume_all(server, topic, partition=0, start=pb.START_EARLIEST, offset=0, **kw):
    """Reads a partition from start to the end as of the request (STOP_AT_END)."""
    recs = []
    for resp in server.sb.Consume(pb.ConsumeRequest(topic=topic, partition=partition, start=start,
                                                    start_offset=offset, stop=pb.STOP_AT_END, **kw),
                                  timeout=120):
        assert resp.partition == partition
        if resp.records:
            assert resp.next_offset == resp.records[-1].offset + 1, resp.next_offset
        recs.extend(resp.records)
    return recs


def rpc_stub(ch):
    return sbtest.rpc.StreamBusStub(ch)


def headers_of(r):
    return [(h.key, h.value) for h in r.headers]


def assert_contiguous(recs, start=0):
    offs = [r.offset for r in recs]
    assert offs == list(range(start, start + len(recs))), \
        "offsets not contiguous from %d: first bad at %s" % (
            start, next((i for i, o in enumerate(offs) if o != start + i), None))


# ---------------------------------------------------------------- tests

def test_roundtrip_bytes():
    """Every field comes back byte-for-byte; timestamp 0 becomes server time."""
    big = os.urandom(1 << 20)
    records = [
        pb.Record(key=b"", value=b"", timestamp_ms=1),                           # empty key + value
        pb.Record(key=b"k", value=b"v", timestamp_ms=1234567890123),
        pb.Record(key=bytes(range(256)), value=bytes(range(255, -1, -1)), timestamp_ms=42),
        pb.Record(key=b"\x00", value=b"\x00\x00\x00", timestamp_ms=2 ** 41),
        pb.Record(value=b"hdr", timestamp_ms=7, headers=[
            pb.Header(key="a", value=b"\x00\xff\x80binary"),
            pb.Header(key="a", value=b"repeated key, second value"),
            pb.Header(key="b", value=b""),                                       # empty value
            pb.Header(key="", value=b"empty key"),
            pb.Header(key="ключ-ü", value="ünïcode".encode()),
            pb.Header(key="a", value=b"third"),
        ]),
        pb.Record(key=b"big", value=big, timestamp_ms=99, headers=[pb.Header(key="h", value=b"x" * 1000)]),
        pb.Record(key=b"now", value=b"server time", timestamp_ms=0),
    ]
    with server("api-rt") as s:
        create(s, "rt")
        t0 = int(time.time() * 1000)
        resps = produce(s, "rt", records, per_request=1)
        t1 = int(time.time() * 1000)
        assert [r.error_code for r in resps] == [0] * len(records), resps
        assert [r.base_offset for r in resps] == list(range(len(records)))
        assert [r.request_id for r in resps] == list(range(len(records)))
        # the same records in one request
        resps = produce(s, "rt", records, per_request=len(records))
        assert len(resps) == 1 and resps[0].error_code == 0 and resps[0].base_offset == len(records)
        t2 = int(time.time() * 1000)

        got = consume_all(s, "rt")
        assert len(got) == 2 * len(records), len(got)
        assert_contiguous(got)
        for i, g in enumerate(got):
            w = records[i % len(records)]
            assert g.key == w.key, "record %d key" % i
            assert g.value == w.value, "record %d value (%d vs %d bytes)" % (i, len(g.value), len(w.value))
            assert headers_of(g) == headers_of(w), "record %d headers: %s" % (i, headers_of(g))
            if w.timestamp_ms:
                assert g.timestamp_ms == w.timestamp_ms, "record %d timestamp %d" % (i, g.timestamp_ms)
        # timestamp 0 = the server's time on arrival
        ts = got[len(records) - 1].timestamp_ms
        assert t0 - 2000 <= ts <= t1 + 2000, (ts, t0, t1)
        assert t0 - 2000 <= got[-1].timestamp_ms <= t2 + 2000

        # Fetch returns the same bytes (one record at a time to include the big one)
        for i in range(len(records)):
            f = s.sb.Fetch(pb.FetchRequest(topic="rt", offset=i, max_records=1))
            assert len(f.records) == 1 and f.records[0].offset == i
            assert f.records[0].value == records[i].value and f.records[0].key == records[i].key
            assert headers_of(f.records[0]) == headers_of(records[i])


def test_ordering_100k_pipelined():
    """100,000 records in 1,000 pipelined requests (32 in flight) come back in order."""
    n_req, per = 1000, 100
    with server("api-order") as s:
        create(s, "order", fsync_policy="never")

        def reqs():
            for i in range(n_req):
                yield pb.ProduceRequest(request_id=i, topic="order", partition=0, records=[
                    pb.Record(value=b"%08d" % (i * per + k)) for k in range(per)])

        stats = {}
        t0 = time.time()
        resps = produce_pipelined(s.sb, reqs(), window=32, stats=stats)
        dt = time.time() - t0
        print("  produced %d records in %.2fs (max %d requests in flight)" % (n_req * per, dt, stats["max_inflight"]))
        assert stats["max_inflight"] > 1, "requests were not pipelined"
        assert len(resps) == n_req, len(resps)
        assert [r.request_id for r in resps] == list(range(n_req)), "responses out of request order"
        bad = [r for r in resps if r.error_code]
        assert not bad, bad[:3]
        assert [r.base_offset for r in resps] == [i * per for i in range(n_req)]

        t0 = time.time()
        got = consume_all(s, "order")
        print("  consumed %d records in %.2fs" % (len(got), time.time() - t0))
        assert len(got) == n_req * per, len(got)
        assert_contiguous(got)
        vals = [r.value for r in got]
        assert vals == [b"%08d" % i for i in range(n_req * per)], "values out of order"


def test_concurrent_producers_and_subscribers():
    """8 producers (own streams) and 8 tail-following subscribers on 4 partitions:
    each subscriber sees every record of its partition exactly once, in order."""
    parts, n_prod, n_req, per = 4, 8, 60, 20
    per_part = n_prod * n_req * per // parts
    with server("api-conc") as s:
        create(s, "conc", partitions=parts, fsync_policy="never")
        errors = []
        seen = {}  # subscriber index -> records
        ready = threading.Barrier(n_prod + 8 + 1, timeout=30)

        def subscriber(idx):
            part = idx % parts
            ch = grpc.insecure_channel(s.addr)
            recs = seen.setdefault(idx, [])
            try:
                call = rpc_stub(ch).Consume(pb.ConsumeRequest(topic="conc", partition=part,
                                                              start=pb.START_EARLIEST, stop=pb.STOP_NEVER,
                                                              max_records=37), timeout=60)
                ready.wait()
                for resp in call:
                    recs.extend(resp.records)
                    if len(recs) >= per_part:
                        call.cancel()
                        break
            except Exception as e:  # noqa: BLE001
                errors.append("subscriber %d: %r" % (idx, e))
            finally:
                ch.close()

        def producer(idx):
            ch = grpc.insecure_channel(s.addr)
            try:
                def reqs():
                    for j in range(n_req):
                        yield pb.ProduceRequest(request_id=j, topic="conc", partition=j % parts, records=[
                            pb.Record(key=b"p%d" % idx, value=b"%d:%d:%d" % (idx, j, k)) for k in range(per)])
                ready.wait()
                resps = produce_pipelined(rpc_stub(ch), reqs(), window=8)
                assert [r.request_id for r in resps] == list(range(n_req)), "responses out of order"
                assert all(r.error_code == 0 for r in resps), [r for r in resps if r.error_code][:2]
                assert all(r.partition == j % parts for j, r in enumerate(resps))
            except Exception as e:  # noqa: BLE001
                errors.append("producer %d: %r" % (idx, e))
            finally:
                ch.close()

        threads = [threading.Thread(target=subscriber, args=(i,)) for i in range(8)]
        threads += [threading.Thread(target=producer, args=(i,)) for i in range(n_prod)]
        for t in threads:
            t.start()
        ready.wait()
        t0 = time.time()
        for t in threads:
            t.join(90)
        assert not any(t.is_alive() for t in threads), "threads hung; errors: %s" % errors
        print("  %d records through %d producers and 8 subscribers in %.2fs" % (
            n_prod * n_req * per, n_prod, time.time() - t0))
        assert not errors, errors
        logs = {p: consume_all(s, "conc", partition=p) for p in range(parts)}
        for p in range(parts):
            log = logs[p]
            assert len(log) == per_part, (p, len(log))
            assert_contiguous(log)
            # per producer, its records of this partition are in send order
            by_prod = {}
            for r in log:
                i, j, k = map(int, r.value.split(b":"))
                by_prod.setdefault(i, []).append((j, k))
            for i, seq in by_prod.items():
                assert seq == sorted(seq), "producer %d out of order on partition %d" % (i, p)
                assert len(seq) == n_req * per // parts
        for idx, recs in seen.items():
            log = logs[idx % parts]
            assert [(r.offset, r.value) for r in recs] == [(r.offset, r.value) for r in log], \
                "subscriber %d differs from the log (%d vs %d records)" % (idx, len(recs), len(log))


def test_tail_follow_latency():
    """A caught-up STOP_NEVER subscriber gets a new record within 1 s."""
    with server("api-tail") as s:
        create(s, "tail")
        produce(s, "tail", [pb.Record(value=b"first")])
        q = queue.Queue()
        call = s.sb.Consume(pb.ConsumeRequest(topic="tail", start=pb.START_EARLIEST, stop=pb.STOP_NEVER),
                            timeout=60)

        def reader():
            try:
                for resp in call:
                    for r in resp.records:
                        q.put((time.monotonic(), r))
            except grpc.RpcError as e:
                q.put((time.monotonic(), e))

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        _, r = q.get(timeout=10)
        assert r.value == b"first"
        lat = []
        for i in range(5):
            time.sleep(0.3)  # let the stream park on the tail
            t0 = time.monotonic()
            resp = produce(s, "tail", [pb.Record(value=b"next%d" % i)])
            assert resp[0].error_code == 0
            t1, r = q.get(timeout=5)
            assert not isinstance(r, Exception), r
            assert r.value == b"next%d" % i and r.offset == i + 1, (r.offset, r.value)
            lat.append(t1 - t0)
        call.cancel()
        t.join(5)
        print("  tail latency (produce sent -> record received): " +
              ", ".join("%.1f ms" % (x * 1000) for x in lat))
        assert max(lat) < 1.0, lat


def test_resume_from_next_offset():
    """Read part, cancel, resume from next_offset: nothing missed or duplicated."""
    with server("api-resume") as s:
        create(s, "res", fsync_policy="never")
        produce(s, "res", [pb.Record(value=b"v%d" % i) for i in range(1000)], per_request=100)
        got, next_off = [], None
        call = s.sb.Consume(pb.ConsumeRequest(topic="res", stop=pb.STOP_NEVER, max_records=70), timeout=30)
        for resp in call:
            assert len(resp.records) <= 70
            assert resp.next_offset == resp.records[-1].offset + 1
            assert resp.high_watermark >= resp.next_offset
            got.extend(resp.records)
            next_off = resp.next_offset
            if len(got) >= 300:
                call.cancel()
                break
        assert 300 <= next_off < 1000, next_off
        for i in range(2):  # resume twice (the second time from a mid-batch offset)
            call = s.sb.Consume(pb.ConsumeRequest(topic="res", start=pb.START_OFFSET, start_offset=next_off,
                                                  stop=pb.STOP_NEVER, max_records=130), timeout=30)
            for resp in call:
                got.extend(resp.records)
                next_off = resp.next_offset
                if len(got) >= (650 if i == 0 else 1000):
                    call.cancel()
                    break
        assert_contiguous(got)
        assert [r.value for r in got] == [b"v%d" % i for i in range(1000)]
        # STOP_AT_OFFSET ends exactly before stop_offset
        part = list(s.sb.Consume(pb.ConsumeRequest(topic="res", start=pb.START_OFFSET, start_offset=10,
                                                   stop=pb.STOP_AT_OFFSET, stop_offset=25)))
        recs = [r for resp in part for r in resp.records]
        assert [r.offset for r in recs] == list(range(10, 25))


def test_start_positions():
    """START_EARLIEST/LATEST/OFFSET/TIMESTAMP and STOP_AT_END on an empty partition."""
    with server("api-start") as s:
        create(s, "sp")
        assert len(consume_all(s, "sp")) == 0  # an empty partition ends at once
        produce(s, "sp", [pb.Record(value=b"a", timestamp_ms=100), pb.Record(value=b"b", timestamp_ms=200),
                          pb.Record(value=b"c", timestamp_ms=300)])
        for ts, want in ((0, [0, 1, 2]), (150, [1, 2]), (200, [1, 2]), (300, [2]), (301, [])):
            got = consume_all(s, "sp", start=pb.START_TIMESTAMP, start_timestamp_ms=ts)
            assert [r.offset for r in got] == want, (ts, [r.offset for r in got])
        assert [r.value for r in consume_all(s, "sp", start=pb.START_OFFSET, offset=2)] == [b"c"]
        assert len(consume_all(s, "sp", start=pb.START_OFFSET, offset=3)) == 0  # at the end: fine
        assert len(consume_all(s, "sp", start=pb.START_LATEST)) == 0
        call = s.sb.Consume(pb.ConsumeRequest(topic="sp", start=pb.START_LATEST, stop=pb.STOP_NEVER), timeout=30)
        time.sleep(0.3)  # the stream has resolved "latest" = 3 by now
        produce(s, "sp", [pb.Record(value=b"new")])
        first = next(call)
        assert [(r.offset, r.value) for r in first.records] == [(3, b"new")], first
        assert first.next_offset == 4 and first.high_watermark == 4
        call.cancel()


def test_delete_topic_ends_subscriptions():
    """Deleting a topic ends its tail-following subscriptions with NOT_FOUND
    (they must not hang forever pinning the deleted files); a topic re-created
    under the same name starts empty."""
    with server("api-delsub") as s:
        create(s, "gone")
        produce(s, "gone", [pb.Record(value=b"old%d" % i) for i in range(3)])
        call = s.sb.Consume(pb.ConsumeRequest(topic="gone", stop=pb.STOP_NEVER), timeout=30)
        assert len(next(call).records) == 3
        s.admin.DeleteTopic(pb.DeleteTopicRequest(name="gone"))
        res = queue.Queue()

        def rest():
            try:
                res.put(("records", [r.value for resp in call for r in resp.records]))
            except grpc.RpcError as e:
                res.put((e.code(), e.details()))

        threading.Thread(target=rest, daemon=True).start()
        try:
            outcome = res.get(timeout=3)
        except queue.Empty:
            outcome = None
        call.cancel()
        create(s, "gone")
        assert len(s.sb.Fetch(pb.FetchRequest(topic="gone")).records) == 0
        assert outcome is not None, "subscription to a deleted topic still open 3 s after the delete"
        assert outcome[0] == SC.NOT_FOUND, outcome


def enc_size(rec):
    """Bytes a ConsumedRecord takes in a FetchResponse (tag + length + body)."""
    n = rec.ByteSize()
    v = 1
    while n >= 0x80 ** v:
        v += 1
    return 1 + v + n


def test_fetch_bounds():
    """Fetch: max_records/max_bytes respected, offsets and watermarks right."""
    with server("api-fetch", args=["--consume-max-records", "200"]) as s:
        create(s, "f", partitions=2)
        recs = [pb.Record(key=b"k%d" % i, value=bytes([i % 256]) * (100 + i % 50)) for i in range(500)]
        produce(s, "f", recs, per_request=50)
        f = s.sb.Fetch(pb.FetchRequest(topic="f", offset=0, max_records=10))
        assert [r.offset for r in f.records] == list(range(10))
        assert (f.high_watermark, f.log_start_offset, f.next_offset) == (500, 0, 10), f
        assert [r.value for r in f.records] == [r.value for r in recs[:10]]
        # from the middle of a batch
        f = s.sb.Fetch(pb.FetchRequest(topic="f", offset=123, max_records=5))
        assert [r.offset for r in f.records] == list(range(123, 128)) and f.next_offset == 128
        assert f.records[0].key == b"k123"
        # max_bytes: the encoded records fit (reads are whole stored batches, so a
        # response may hold less than max_bytes allows, but never more)
        for mb in (1000, 4096, 20000):
            f = s.sb.Fetch(pb.FetchRequest(topic="f", offset=7, max_bytes=mb))
            size = sum(enc_size(r) for r in f.records)
            assert 1 <= len(f.records) and size <= mb, (mb, size, len(f.records))
            assert f.next_offset == 7 + len(f.records)
            assert [r.offset for r in f.records] == list(range(7, f.next_offset))
            if mb >= 20000:
                assert size >= mb // 2, "max_bytes %d: only %d bytes" % (mb, size)
        # max_bytes smaller than one record: still one record (progress)
        f = s.sb.Fetch(pb.FetchRequest(topic="f", offset=0, max_bytes=1))
        assert len(f.records) == 1 and f.next_offset == 1
        # 0 = server default (here --consume-max-records 200); above the cap = the cap
        f = s.sb.Fetch(pb.FetchRequest(topic="f", offset=0))
        assert len(f.records) == 200 and f.next_offset == 200
        f = s.sb.Fetch(pb.FetchRequest(topic="f", offset=0, max_records=100000))
        assert len(f.records) == 200
        # at the end: empty, next_offset = end
        f = s.sb.Fetch(pb.FetchRequest(topic="f", offset=500))
        assert (len(f.records), f.next_offset, f.high_watermark) == (0, 500, 500), f
        # the tail: fewer than asked
        f = s.sb.Fetch(pb.FetchRequest(topic="f", offset=495, max_records=50))
        assert [r.offset for r in f.records] == list(range(495, 500)) and f.next_offset == 500
        # an empty partition
        f = s.sb.Fetch(pb.FetchRequest(topic="f", partition=1, offset=0))
        assert (len(f.records), f.next_offset, f.high_watermark, f.log_start_offset) == (0, 0, 0, 0)
        # past the end: OUT_OF_RANGE naming the valid range
        expect_code(SC.OUT_OF_RANGE, s.sb.Fetch, pb.FetchRequest(topic="f", offset=501), contains="[0, 500]")
        expect_code(SC.OUT_OF_RANGE, s.sb.Fetch, pb.FetchRequest(topic="f", partition=1, offset=1), contains="[0, 0]")


def test_bad_input_exact_codes():
    """Every kind of bad input gets its exact status code; the server keeps serving."""
    with server("api-bad") as s:
        create(s, "t", partitions=3)
        produce(s, "t", [pb.Record(value=b"x%d" % i) for i in range(5)])
        raw_fetch = s.channel.unary_unary("/streambus.v1.StreamBus/Fetch")
        raw_consume = s.channel.unary_stream("/streambus.v1.StreamBus/Consume")
        raw_produce = s.channel.stream_stream("/streambus.v1.StreamBus/Produce")
        raw_create = s.channel.unary_unary("/streambus.v1.Admin/CreateTopic")
        raw_health = s.channel.unary_unary("/grpc.health.v1.Health/Check")

        garbage = [b"\xff\xff\xff\xff\xff", b"\x07", b"\x0f\x00", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"]
        good_fetch = pb.FetchRequest(topic="t", offset=0).SerializeToString()
        good_produce = pb.ProduceRequest(topic="t", records=[pb.Record(value=b"y" * 100)]).SerializeToString()
        truncated = [good_fetch[:-1], good_produce[:-10], good_produce[:len(good_produce) // 2]]
        for b in garbage + truncated:
            expect_code(SC.INVALID_ARGUMENT, raw_fetch, b)
            expect_code(SC.INVALID_ARGUMENT, lambda x: list(raw_consume(x)), b)
            expect_code(SC.INVALID_ARGUMENT, raw_create, b)
            expect_code(SC.INVALID_ARGUMENT, raw_health, b)

        def raw_produce_code(b):
            """The code a raw Produce message gets: per request, or the stream's status."""
            try:
                out = [pb.ProduceResponse.FromString(x) for x in raw_produce(iter([b]), timeout=10)]
            except grpc.RpcError as e:
                return e.code()
            assert len(out) == 1, out
            return {v: k for k, v in CODE_NUM.items()}[out[0].error_code]

        for b in garbage + truncated[1:]:
            c = raw_produce_code(b)
            assert c == SC.INVALID_ARGUMENT, (b[:20], c)

        # one Produce stream: bad requests are answered in order and the stream carries on
        def mk(i, **kw):
            kw.setdefault("topic", "t")
            kw.setdefault("records", [pb.Record(value=b"ok%d" % i)])
            return pb.ProduceRequest(request_id=i, **kw)
        reqs = [
            (mk(0), SC.OK),
            (mk(1, records=[]), SC.INVALID_ARGUMENT),                    # empty batch
            (mk(2, topic=""), SC.INVALID_ARGUMENT),
            (mk(3, topic=".."), SC.INVALID_ARGUMENT),
            (mk(4, topic="a/b"), SC.INVALID_ARGUMENT),
            (mk(5, topic="x" * 250), SC.INVALID_ARGUMENT),
            (mk(6, topic="."), SC.INVALID_ARGUMENT),
            (mk(7, partition=-2), SC.INVALID_ARGUMENT),
            (mk(8, topic="nosuch"), SC.NOT_FOUND),
            (mk(9, partition=3), SC.NOT_FOUND),
            (mk(10, partition=1000000), SC.NOT_FOUND),
            (mk(11, acks=7), SC.INVALID_ARGUMENT),                         # unknown enum value
            (mk(12, topic="a\x00b"), SC.INVALID_ARGUMENT),                 # NUL inside the name
            (mk(13, records=[pb.Record(value=b"a"), pb.Record()]), SC.OK),  # an all-empty record is fine
            (mk(14), SC.OK),
        ]
        resps = list(s.sb.Produce(iter([r for r, _ in reqs]), timeout=30))
        assert [r.request_id for r in resps] == list(range(len(reqs))), resps
        for (req, code), resp in zip(reqs, resps):
            assert resp.error_code == CODE_NUM[code], (req.request_id, code, resp)
            if code != SC.OK:
                assert resp.error_message, resp
                assert resp.base_offset == -1, resp
        assert [resps[i].base_offset for i in (0, 13, 14)] == [5, 6, 8], resps
        assert "(it has 3)" in resps[9].error_message

        # a record with too many headers is refused (not appended), the stream continues
        many = pb.Record(value=b"h", headers=[pb.Header(key="k%d" % i, value=b"v") for i in range(1025)])
        resps = list(s.sb.Produce(iter([mk(0, records=[many]), mk(1)]), timeout=30))
        assert resps[0].error_code in (CODE_NUM[SC.INVALID_ARGUMENT], CODE_NUM[SC.RESOURCE_EXHAUSTED]), resps[0]
        assert resps[1].error_code == 0 and resps[1].base_offset == 9, resps[1]

        # names on the data path: invalid -> INVALID_ARGUMENT, unknown -> NOT_FOUND
        for name in ["", "..", ".", "a/b", "x" * 250, "sp ace", "../etc"]:
            expect_code(SC.INVALID_ARGUMENT, s.sb.Fetch, pb.FetchRequest(topic=name))
            expect_code(SC.INVALID_ARGUMENT, lambda: list(s.sb.Consume(pb.ConsumeRequest(topic=name))))
            expect_code(SC.INVALID_ARGUMENT, s.admin.CreateTopic, pb.CreateTopicRequest(name=name))
        create(s, "x" * 249)  # the longest valid name
        expect_code(SC.NOT_FOUND, s.sb.Fetch, pb.FetchRequest(topic="nosuch"))
        expect_code(SC.NOT_FOUND, lambda: list(s.sb.Consume(pb.ConsumeRequest(topic="nosuch", stop=pb.STOP_AT_END))))
        for p in (-1, 3, 2 ** 31 - 1):
            expect_code(SC.NOT_FOUND, s.sb.Fetch, pb.FetchRequest(topic="t", partition=p), contains="partition")
            expect_code(SC.NOT_FOUND, lambda: list(s.sb.Consume(pb.ConsumeRequest(topic="t", partition=p))))

        # offsets: negative -> INVALID_ARGUMENT; past the end -> OUT_OF_RANGE with the range
        expect_code(SC.INVALID_ARGUMENT, s.sb.Fetch, pb.FetchRequest(topic="t", offset=-1))
        expect_code(SC.INVALID_ARGUMENT, s.sb.Fetch, pb.FetchRequest(topic="t", offset=-(2 ** 63)))
        expect_code(SC.INVALID_ARGUMENT, lambda: list(s.sb.Consume(pb.ConsumeRequest(
            topic="t", start=pb.START_OFFSET, start_offset=-5))))
        expect_code(SC.INVALID_ARGUMENT, lambda: list(s.sb.Consume(pb.ConsumeRequest(
            topic="t", stop=pb.STOP_AT_OFFSET, stop_offset=-1))))
        expect_code(SC.OUT_OF_RANGE, s.sb.Fetch, pb.FetchRequest(topic="t", offset=11), contains="[0, 10]")
        expect_code(SC.OUT_OF_RANGE, s.sb.Fetch, pb.FetchRequest(topic="t", offset=2 ** 62), contains="[0, 10]")
        expect_code(SC.OUT_OF_RANGE, lambda: list(s.sb.Consume(pb.ConsumeRequest(
            topic="t", start=pb.START_OFFSET, start_offset=100, stop=pb.STOP_AT_END))), contains="[0, 10]")
        # enum values this server does not know
        expect_code(SC.INVALID_ARGUMENT, lambda: list(s.sb.Consume(pb.ConsumeRequest(topic="t", start=9))))
        expect_code(SC.INVALID_ARGUMENT, lambda: list(s.sb.Consume(pb.ConsumeRequest(topic="t", stop=9))))

        # admin: bad config
        expect_code(SC.INVALID_ARGUMENT, s.admin.CreateTopic, pb.CreateTopicRequest(name="c1", partitions=-1))
        expect_code(SC.INVALID_ARGUMENT, s.admin.CreateTopic, pb.CreateTopicRequest(
            name="c2", config=pb.TopicConfig(fsync_policy="sometimes")))
        expect_code(SC.INVALID_ARGUMENT, s.admin.CreateTopic, pb.CreateTopicRequest(
            name="c3", config=pb.TopicConfig(retention_bytes=-2)))
        expect_code(SC.INVALID_ARGUMENT, s.admin.CreateTopic, pb.CreateTopicRequest(
            name="c4", replication_factor=1, config=pb.TopicConfig(min_insync_replicas=2)))

        # unknown methods and services
        for path in ("/streambus.v1.StreamBus/Nope", "/streambus.v1.Admin/DropEverything", "/no.such.Service/X",
                     "/streambus.v1.StreamBus/produce"):
            expect_code(SC.UNIMPLEMENTED, s.channel.unary_unary(path), b"")
            expect_code(SC.UNIMPLEMENTED, lambda: list(s.channel.stream_stream(path)(iter([b"\x00"]))))

        # and everything still works, for a new connection too
        r = produce(s, "t", [pb.Record(value=b"after")])
        assert r[0].error_code == 0 and r[0].base_offset == 10, r
        with grpc.insecure_channel(s.addr) as ch:
            f = rpc_stub(ch).Fetch(pb.FetchRequest(topic="t", offset=10))
            assert [x.value for x in f.records] == [b"after"]
        assert [x.value for x in consume_all(s, "t")] == [b"x%d" % i for i in range(5)] + [b"ok0", b"a", b"", b"ok14", b"ok1", b"after"]
        assert not s.admin.DescribeTopic(pb.DescribeTopicRequest(name="t")).partitions[1].log_end_offset
        names = {t.name for t in s.admin.ListTopics(pb.ListTopicsRequest()).topics}
        assert names == {"t", "x" * 249}, names  # none of the rejected creates left a topic


def test_bad_names_on_admin_lookups():
    """RELIABILITY.md rule 7: a bad topic name is INVALID_ARGUMENT on every method,
    including DescribeTopic and DeleteTopic (not NOT_FOUND)."""
    with server("api-badadmin") as s:
        for name in ["", "..", "a/b", "x" * 250]:
            expect_code(SC.INVALID_ARGUMENT, s.admin.DescribeTopic, pb.DescribeTopicRequest(name=name))
            expect_code(SC.INVALID_ARGUMENT, s.admin.DeleteTopic, pb.DeleteTopicRequest(name=name))


def test_rejected_calls_concurrently():
    """Many concurrent calls the server rejects at once (unknown methods) are all
    answered UNIMPLEMENTED and the server survives (the reject path frees its
    state while another worker may still be finishing it)."""
    with server("api-reject", args=["--workers", "4"]) as s:
        create(s, "t")
        errors, counts = [], {}

        def worker(i):
            try:
                with grpc.insecure_channel(s.addr) as ch:
                    f = ch.unary_unary("/no.such.Service/M%d" % i)
                    for _ in range(400):
                        e = expect_code(SC.UNIMPLEMENTED, f, b"")
                        counts[e.code()] = counts.get(e.code(), 0) + 1
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e)[:300])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert s.proc.poll() is None, "streambusd died (status %s):\n%s" % (s.proc.returncode, s.read_log()[-3000:])
        assert not errors, errors[:3]
        r = produce(s, "t", [pb.Record(value=b"still here")])
        assert r[0].error_code == 0, r


def test_limits_exact_codes():
    """At --max-streams / --max-subscribers every kind of call is refused with
    RESOURCE_EXHAUSTED (API.md: "too many streams or subscribers"); Health.Check
    still answers; a freed slot is usable again."""
    with server("api-limits", args=["--max-streams", "3", "--max-subscribers", "2"]) as s:
        create(s, "t")
        produce(s, "t", [pb.Record(value=b"a")])
        subs = []
        for _ in range(2):
            c = s.sb.Consume(pb.ConsumeRequest(topic="t"), timeout=30)
            next(c)
            subs.append(c)
        expect_code(SC.RESOURCE_EXHAUSTED, lambda: next(s.sb.Consume(pb.ConsumeRequest(topic="t"))),
                    contains="subscribers")
        w = s.health.Watch(health_pb2.HealthCheckRequest(service="readiness"), timeout=30)
        next(w)  # the third stream: now every call slot is taken
        checks = [
            ("Fetch", lambda: s.sb.Fetch(pb.FetchRequest(topic="t"))),
            ("ListTopics", lambda: s.admin.ListTopics(pb.ListTopicsRequest())),
            ("Produce", lambda: produce(s, "t", [pb.Record(value=b"b")])),
            ("Consume", lambda: next(s.sb.Consume(pb.ConsumeRequest(topic="t")))),
            ("Watch", lambda: next(s.health.Watch(health_pb2.HealthCheckRequest(service="readiness")))),
        ]
        wrong = []
        for name, fn in checks:
            try:
                fn()
                wrong.append("%s: succeeded" % name)
            except grpc.RpcError as e:
                if e.code() != SC.RESOURCE_EXHAUSTED:
                    wrong.append("%s: %s %r" % (name, e.code(), e.details()))
        H = health_pb2.HealthCheckResponse
        assert s.health.Check(health_pb2.HealthCheckRequest(service="readiness")).status == H.SERVING
        subs[0].cancel()
        w.cancel()
        deadline = time.time() + 5
        while True:  # the server notices the cancellations asynchronously
            try:
                assert len(s.sb.Fetch(pb.FetchRequest(topic="t")).records) == 1
                break
            except grpc.RpcError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        subs[1].cancel()
        assert not wrong, "at the stream limit: " + "; ".join(wrong)


def test_oversize_messages():
    """Messages above --max-message-bytes: RESOURCE_EXHAUSTED; the server keeps serving."""
    with server("api-big", args=["--max-message-bytes", "65536"]) as s:
        create(s, "t")
        expect_code(SC.RESOURCE_EXHAUSTED, produce, s, "t", [pb.Record(value=b"x" * 70000)])
        # a big message after good ones on the same stream ends the stream; the good ones stay
        reqs = [pb.ProduceRequest(request_id=i, topic="t", records=[pb.Record(value=b"ok")]) for i in range(3)]
        reqs.append(pb.ProduceRequest(request_id=3, topic="t", records=[pb.Record(value=b"x" * 100000)]))
        expect_code(SC.RESOURCE_EXHAUSTED, lambda: list(s.sb.Produce(iter(reqs), timeout=30)))
        expect_code(SC.RESOURCE_EXHAUSTED, s.sb.Fetch, pb.FetchRequest(topic="t" * 70000))
        expect_code(SC.RESOURCE_EXHAUSTED, lambda: list(s.sb.Consume(pb.ConsumeRequest(topic="t" * 70000))))
        expect_code(SC.RESOURCE_EXHAUSTED, s.admin.CreateTopic, pb.CreateTopicRequest(name="t" * 70000))
        # just under the limit works
        r = produce(s, "t", [pb.Record(value=b"y" * 60000)])
        assert r[0].error_code == 0, r
        vals = [x.value for x in consume_all(s, "t")]
        assert vals[-1] == b"y" * 60000 and all(v == b"ok" for v in vals[:-1]) and len(vals) <= 4, len(vals)


def test_acks():
    """ACKS_NONE: no responses unless a request fails; ACKS_ALL with replication 1 works."""
    with server("api-acks") as s:
        create(s, "a", partitions=2)
        reqs = [pb.ProduceRequest(request_id=i, topic="a", acks=pb.ACKS_NONE,
                                  records=[pb.Record(value=b"n%d" % i)]) for i in range(50)]
        resps = list(s.sb.Produce(iter(reqs), timeout=30))  # the stream ends OK
        assert resps == [], resps
        assert [x.value for x in consume_all(s, "a")] == [b"n%d" % i for i in range(50)]
        # a failing ACKS_NONE request is answered (only it)
        reqs = [pb.ProduceRequest(request_id=100 + i, topic="a", acks=pb.ACKS_NONE, partition=5 if i == 3 else 0,
                                  records=[pb.Record(value=b"m%d" % i)]) for i in range(6)]
        resps = list(s.sb.Produce(iter(reqs), timeout=30))
        assert len(resps) == 1 and resps[0].request_id == 103, resps
        assert resps[0].error_code == CODE_NUM[SC.NOT_FOUND] and resps[0].error_message, resps[0]
        assert [x.value for x in consume_all(s, "a")][50:] == [b"m%d" % i for i in range(6) if i != 3]
        # ACKS_ALL on replication 1
        desc = s.admin.DescribeTopic(pb.DescribeTopicRequest(name="a"))
        assert desc.topic.replication_factor == 1
        resps = produce(s, "a", [pb.Record(value=b"all%d" % i) for i in range(30)], partition=1,
                        acks=pb.ACKS_ALL, per_request=10)
        assert [(r.error_code, r.base_offset, r.partition) for r in resps] == [(0, 0, 1), (0, 10, 1), (0, 20, 1)], resps
        assert [x.value for x in consume_all(s, "a", partition=1)] == [b"all%d" % i for i in range(30)]
        # mixed acks on one stream: answers only for LEADER/ALL, in order
        reqs = [pb.ProduceRequest(request_id=i, topic="a", acks=[pb.ACKS_NONE, pb.ACKS_LEADER, pb.ACKS_ALL][i % 3],
                                  records=[pb.Record(value=b"x")]) for i in range(9)]
        resps = list(s.sb.Produce(iter(reqs), timeout=30))
        assert [r.request_id for r in resps] == [1, 2, 4, 5, 7, 8], resps
        assert [r.base_offset for r in resps] == [56, 57, 59, 60, 62, 63], resps


def test_partition_any():
    """partition -1: a key always lands on the same partition; keyless requests spread."""
    parts = 4
    with server("api-any") as s:
        create(s, "any", partitions=parts, fsync_policy="never")
        placed = {}
        for rnd in range(3):
            reqs = [pb.ProduceRequest(request_id=k, topic="any", partition=-1,
                                      records=[pb.Record(key=b"key-%d" % k, value=b"%d/%d" % (k, rnd))])
                    for k in range(40)]
            for r in s.sb.Produce(iter(reqs), timeout=30):
                assert r.error_code == 0, r
                assert 0 <= r.partition < parts
                assert placed.setdefault(r.request_id, r.partition) == r.partition, \
                    "key-%d moved from partition %d to %d" % (r.request_id, placed[r.request_id], r.partition)
        assert len(set(placed.values())) >= 2, "40 keys all hashed to one partition: %s" % placed
        for p in range(parts):
            for rec in consume_all(s, "any", partition=p):
                k = int(rec.value.split(b"/")[0])
                assert rec.key == b"key-%d" % k and placed[k] == p, (p, rec)
        # keyless: spread (round robin) over the partitions
        reqs = [pb.ProduceRequest(request_id=i, topic="any", partition=-1, records=[pb.Record(value=b"nokey")])
                for i in range(40)]
        counts = [0] * parts
        for r in s.sb.Produce(iter(reqs), timeout=30):
            assert r.error_code == 0, r
            counts[r.partition] += 1
        assert all(c >= 5 for c in counts), "keyless requests not spread: %s" % counts
        total = sum(len([x for x in consume_all(s, "any", partition=p) if x.value == b"nokey"]) for p in range(parts))
        assert total == 40


def test_admin():
    """Create (with config), list, describe (offsets, size), duplicate, delete."""
    with server("api-admin") as s:
        s.admin.CreateTopic(pb.CreateTopicRequest(name="adm", partitions=3, config=pb.TopicConfig(
            fsync_policy="never", retention_ms=3600000, retention_bytes=50 << 20, segment_bytes=8 << 20)))
        create(s, "other")
        topics = {t.name: t for t in s.admin.ListTopics(pb.ListTopicsRequest()).topics}
        assert set(topics) == {"adm", "other"}, topics
        t = topics["adm"]
        assert t.partitions == 3 and t.replication_factor == 1
        assert (t.config.fsync_policy, t.config.retention_ms, t.config.retention_bytes, t.config.segment_bytes) == \
            ("never", 3600000, 50 << 20, 8 << 20), t.config
        assert topics["other"].config.fsync_policy == "always"  # the server's default
        expect_code(SC.ALREADY_EXISTS, s.admin.CreateTopic, pb.CreateTopicRequest(name="adm"))
        expect_code(SC.ALREADY_EXISTS, s.admin.CreateTopic, pb.CreateTopicRequest(name="adm", partitions=7))

        d = s.admin.DescribeTopic(pb.DescribeTopicRequest(name="adm"))
        assert d.topic.name == "adm" and d.topic.partitions == 3 and d.topic.config.fsync_policy == "never"
        assert [p.partition for p in d.partitions] == [0, 1, 2]
        for p in d.partitions:
            assert (p.log_start_offset, p.log_end_offset, p.high_watermark) == (0, 0, 0), p
        produce(s, "adm", [pb.Record(value=b"z" * 1000) for _ in range(10)], partition=1)
        d = s.admin.DescribeTopic(pb.DescribeTopicRequest(name="adm"))
        p0, p1 = d.partitions[0], d.partitions[1]
        assert (p1.log_start_offset, p1.log_end_offset, p1.high_watermark) == (0, 10, 10), p1
        assert 10 * 1000 <= p1.size_bytes < 10 * 1000 + 4096, p1.size_bytes
        assert p1.segments >= 1 and list(p1.replicas) == [p1.leader] and list(p1.in_sync_replicas) == [p1.leader]
        assert p0.log_end_offset == 0 and p0.size_bytes == 0, p0

        s.admin.DeleteTopic(pb.DeleteTopicRequest(name="adm"))
        expect_code(SC.NOT_FOUND, s.admin.DescribeTopic, pb.DescribeTopicRequest(name="adm"))
        expect_code(SC.NOT_FOUND, s.admin.DeleteTopic, pb.DeleteTopicRequest(name="adm"))
        expect_code(SC.NOT_FOUND, s.sb.Fetch, pb.FetchRequest(topic="adm", partition=1))
        r = produce(s, "adm", [pb.Record(value=b"gone")])
        assert r[0].error_code == CODE_NUM[SC.NOT_FOUND], r
        assert {t.name for t in s.admin.ListTopics(pb.ListTopicsRequest()).topics} == {"other"}
        # re-created: a new, empty topic
        create(s, "adm", partitions=2)
        d = s.admin.DescribeTopic(pb.DescribeTopicRequest(name="adm"))
        assert len(d.partitions) == 2 and all(p.log_end_offset == 0 for p in d.partitions), d
        assert len(s.sb.Fetch(pb.FetchRequest(topic="adm", partition=1)).records) == 0
        ci = s.admin.GetClusterInfo(pb.GetClusterInfoRequest())
        assert len(ci.nodes) == 1 and ci.nodes[0].id == ci.node_id


def test_health():
    """Check: "", readiness, liveness SERVING; unknown NOT_FOUND; Watch sends SERVING."""
    with server("api-health") as s:
        H = health_pb2.HealthCheckResponse
        for svc in ("", "readiness", "liveness", "streambus.v1.StreamBus", "streambus.v1.Admin"):
            assert s.health.Check(health_pb2.HealthCheckRequest(service=svc)).status == H.SERVING, svc
        for svc in ("nosuch", "grpc.health.v1.Health.x", "Readiness"):
            expect_code(SC.NOT_FOUND, s.health.Check, health_pb2.HealthCheckRequest(service=svc))
        for svc in ("readiness", ""):
            w = s.health.Watch(health_pb2.HealthCheckRequest(service=svc), timeout=10)
            first = next(w)
            assert first.status == H.SERVING, first
            w.cancel()
        # an unknown service on Watch is SERVICE_UNKNOWN (grpc health protocol), not an error
        w = s.health.Watch(health_pb2.HealthCheckRequest(service="nosuch"), timeout=10)
        assert next(w).status == H.SERVICE_UNKNOWN
        w.cancel()


def test_a_second_server_on_a_taken_port_fails():
    """gRPC would set SO_REUSEPORT and let a second server share the port
    (connections split between two data directories); it must fail instead."""
    import subprocess
    with server("port-taken") as s:
        other = os.path.join(os.path.dirname(s.data_dir), "other")
        p = subprocess.run([sbtest.STREAMBUSD, "--listen", s.addr, "--data-dir", other],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
        assert "event=listen_failed" in p.stderr, p.stderr[-2000:]


if __name__ == "__main__":
    run_tests([
        test_a_second_server_on_a_taken_port_fails,
        test_roundtrip_bytes,
        test_ordering_100k_pipelined,
        test_concurrent_producers_and_subscribers,
        test_tail_follow_latency,
        test_resume_from_next_offset,
        test_start_positions,
        test_delete_topic_ends_subscriptions,
        test_fetch_bounds,
        test_bad_input_exact_codes,
        test_bad_names_on_admin_lookups,
        test_oversize_messages,
        test_rejected_calls_concurrently,
        test_limits_exact_codes,
        test_acks,
        test_partition_any,
        test_admin,
        test_health,
    ])
