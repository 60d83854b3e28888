"""Integration tests of StreamBus/Lookup (the partitions' key stores) against
the real streambusd, from Python grpcio.

Covers: lookup right after produce (a record acknowledged before the call is
visible), overwrites, tombstones (and their validation), keyless records,
headers, partition -1 hashing as Produce does, many keys per call and the
limits, a 1 MiB memtable forced through flushes and merges while a model map
is checked, restart (tables plus replay), kill -9 (replay from the log),
permissions-free errors (unknown topic, bad keys), and `streambus lookup`.

Run by CTest (it_test_lookup) with STREAMBUSD, STREAMBUS_CLI, SB_PY and
SB_TEST_TMP set.
"""
import json
import os
import random
import subprocess

import sbtest
from sbtest import Server, create_topic as create, expect_code, pb, produce, run_tests, server

import grpc

SC = grpc.StatusCode
CLI = os.environ.get("STREAMBUS_CLI", "")


def lookup(s, topic, keys, partition=-1):
    return list(s.sb.Lookup(pb.LookupRequest(topic=topic, keys=keys, partition=partition)).results)


def test_lookup_sees_what_was_acknowledged():
    with server("lookup-basic") as s:
        create(s, "t")
        recs = [pb.Record(key=b"a", value=b"1"), pb.Record(key=b"b", value=b"2",
                headers=[pb.Header(key="h", value=b"x")]), pb.Record(value=b"keyless"),
                pb.Record(key=b"a", value=b"3")]
        r = produce(s, "t", recs)
        assert all(x.error_code == 0 for x in r), r
        res = lookup(s, "t", [b"a", b"b", b"zz"], partition=0)
        assert [x.key for x in res] == [b"a", b"b", b"zz"]
        assert res[0].found and res[0].record.value == b"3" and res[0].record.offset == 3, res[0]
        assert res[1].found and res[1].record.value == b"2" and res[1].record.offset == 1
        assert [(h.key, h.value) for h in res[1].record.headers] == [("h", b"x")]
        assert res[1].record.key == b"b" and res[1].record.timestamp_ms > 0
        assert not res[2].found and not res[2].HasField("record")
        # A tombstone deletes the key; Consume shows it as one.
        r = produce(s, "t", [pb.Record(key=b"a", tombstone=True)])
        assert r[0].error_code == 0, r
        assert not lookup(s, "t", [b"a"], partition=0)[0].found
        recs = list(s.sb.Consume(pb.ConsumeRequest(topic="t", partition=0, start=pb.START_OFFSET,
                                                   start_offset=4, stop=pb.STOP_AT_END)))
        assert recs[0].records[0].tombstone and recs[0].records[0].key == b"a"
        # And a later record brings it back.
        produce(s, "t", [pb.Record(key=b"a", value=b"4")])
        assert lookup(s, "t", [b"a"], partition=0)[0].record.value == b"4"


def test_tombstones_and_lookups_are_validated():
    with server("lookup-bad") as s:
        create(s, "t", partitions=2)
        bad = [pb.Record(tombstone=True), pb.Record(key=b"k", value=b"v", tombstone=True)]
        for rec in bad:
            r = produce(s, "t", [rec])
            assert r[0].error_code == SC.INVALID_ARGUMENT.value[0], r
        expect_code(SC.INVALID_ARGUMENT, lookup, s, "t", [])
        expect_code(SC.INVALID_ARGUMENT, lookup, s, "t", [b""])
        expect_code(SC.INVALID_ARGUMENT, lookup, s, "t", [b"k" * 65537])
        expect_code(SC.INVALID_ARGUMENT, lookup, s, "t", [b"k%d" % i for i in range(1001)])
        expect_code(SC.NOT_FOUND, lookup, s, "nope", [b"k"])
        expect_code(SC.NOT_FOUND, lookup, s, "t", [b"k"], partition=2)
        assert len(lookup(s, "t", [b"k%d" % i for i in range(1000)])) == 1000


def test_partition_minus_one_finds_what_produce_placed():
    with server("lookup-hash") as s:
        create(s, "t", partitions=4)
        keys = [b"key-%d" % i for i in range(200)]
        r = produce(s, "t", [pb.Record(key=k, value=b"v-" + k) for k in keys], partition=-1, per_request=1)
        assert all(x.error_code == 0 for x in r)
        placed = {keys[i]: r[i].partition for i in range(len(keys))}
        assert len(set(placed.values())) > 1
        res = lookup(s, "t", keys)
        for x in res:
            assert x.found and x.record.value == b"v-" + x.key, x
            assert x.partition == placed[x.key]


def check_model(s, topic, model, partitions):
    keys = sorted(model)
    for i in range(0, len(keys), 500):
        for x in lookup(s, topic, keys[i:i + 500]):
            want = model[x.key]
            if want is None:
                assert not x.found, (x.key, x.record.offset)
            else:
                assert x.found and x.record.value == want, (x.key, x.found, x.record.value[:20], want[:20])


def test_flushes_merges_restart_and_kill9_keep_the_model():
    """A 1 MiB memtable: 8,000 records of ~1 KiB over 600 keys (1 in 8 a tombstone) go through
    many flushes and merges; the model holds after each phase, after a clean restart (tables)
    and after kill -9 (tables plus replay of the log)."""
    base = sbtest.scratch_dir("lookup-model")
    data = os.path.join(base, "data")
    args = ["--memtable-bytes", "1048576", "--kv-replay-bytes", "1048576", "--delete-retention-ms", "0"]
    rng = random.Random(7)
    model = {}

    def batch(n):
        recs = []
        for _ in range(n):
            k = b"k%04d" % rng.randrange(600)
            if rng.randrange(8) == 0:
                recs.append(pb.Record(key=k, tombstone=True))
                model[k] = None
            else:
                v = bytes([rng.randrange(256)]) * rng.randrange(200, 1800)
                recs.append(pb.Record(key=k, value=v))
                model[k] = v
        return recs

    with server("lookup-model", args, data_dir=data) as s:
        create(s, "m", partitions=2)
        for phase in range(4):
            for _ in range(10):
                r = produce(s, "m", batch(200), partition=-1, per_request=1)
                assert all(x.error_code == 0 for x in r)
            check_model(s, "m", model, 2)
    s = Server(name="lookup-model", args=args, data_dir=data).start()
    try:
        check_model(s, "m", model, 2)
        r = produce(s, "m", batch(500), partition=-1, per_request=1)
        assert all(x.error_code == 0 for x in r)
        check_model(s, "m", model, 2)
    finally:
        s.kill9()
    s.check_log()
    with server("lookup-model", args, data_dir=data) as s:
        check_model(s, "m", model, 2)
        log = s.read_log()
    tables = sum(len([f for f in os.listdir(os.path.join(data, "topics", "m", str(p), "kv")) if f.endswith(".sst")])
                 for p in range(2))
    print("  tables after the run: %d; kv_opened lines: %s" % (
        tables, [line.split("event=kv_opened ")[1] for line in log.splitlines() if "kv_opened" in line]))
    assert 0 < tables <= 2 * 16
    sbtest.cleanup(base)


def test_cli_lookup():
    if not CLI:
        print("  STREAMBUS_CLI not set: skipped")
        return
    with server("lookup-cli") as s:
        create(s, "t", partitions=3)
        run = lambda *a, **kw: subprocess.run([CLI, "--server", s.addr] + list(a), capture_output=True,  # noqa: E731
                                               **kw)
        p = run("produce", "-t", "t", "-K", "=", "--tombstones", input=b"a=1\nb=2\na=3\nc=x\nc=\n")
        assert p.returncode == 0, p.stderr
        p = run("lookup", "-t", "t", "--json", "a", "b", "c")
        assert p.returncode == 3, (p.returncode, p.stderr)  # c is deleted: not found
        rows = [json.loads(line) for line in p.stdout.decode().splitlines()]
        assert [(r["key"], r["found"], r.get("value")) for r in rows] == [
            ("a", True, "3"), ("b", True, "2"), ("c", False, None)], rows
        p = run("lookup", "-t", "t", "a", "b")
        assert p.returncode == 0 and p.stdout == b"3\n2\n", (p.returncode, p.stdout, p.stderr)


if __name__ == "__main__":
    run_tests([test_lookup_sees_what_was_acknowledged, test_tombstones_and_lookups_are_validated,
               test_partition_minus_one_finds_what_produce_placed, test_flushes_merges_restart_and_kill9_keep_the_model,
               test_cli_lookup])
