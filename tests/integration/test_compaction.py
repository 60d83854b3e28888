"""Integration tests of compacted topics (cleanup_policy "compact") against the
real streambusd: the log cleaner rewrites sealed segments keeping each key's
newest record (offsets preserved: consumers see gaps, never reordering),
tombstones go after delete_retention_ms, records without keys are refused,
and everything holds across a restart and with readers reading while the
cleaner swaps files.

Run by CTest (it_test_compaction) with STREAMBUSD, SB_PY and SB_TEST_TMP set.
"""
import os
import random
import threading
import time

import sbtest
from sbtest import create_topic, pb, produce, run_tests, server

import grpc

SC = grpc.StatusCode
ARGS = ["--cleaner-interval-ms", "200", "--delete-retention-ms", "0", "--memtable-bytes", "1048576"]


def create_compacted(s, name, partitions=1, policy="compact"):
    s.admin.CreateTopic(pb.CreateTopicRequest(name=name, partitions=partitions, config=pb.TopicConfig(
        cleanup_policy=policy, segment_bytes=16384)))


def read_all(s, topic, partition=0):
    out = []
    for r in s.sb.Consume(pb.ConsumeRequest(topic=topic, partition=partition, start=pb.START_EARLIEST,
                                            stop=pb.STOP_AT_END)):
        out += [(x.offset, x.key, x.value, x.tombstone) for x in r.records]
    return out


def check_compacted(records, model, end):
    """Offsets increase; every key's newest record is there with its value; deleted keys
    have no live record after their tombstone."""
    offs = [o for o, _, _, _ in records]
    assert offs == sorted(offs) and len(set(offs)) == len(offs), "reordered or duplicated offsets"
    assert offs[-1] == end - 1, (offs[-1], end)  # the newest record is never dropped
    newest = {}
    for o, k, v, t in records:
        newest[k] = (o, v, t)
    for k, want in model.items():
        if want is None:
            assert k not in newest or newest[k][2], (k, newest.get(k))
        else:
            assert k in newest and newest[k][1] == want and not newest[k][2], (k, newest.get(k), want[:16])


def wait_cleaned(s, topic, produced, fraction, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        n = len(read_all(s, topic))
        if n <= produced * fraction:
            return n
        time.sleep(0.2)
    raise AssertionError("the cleaner did not shrink %s below %d of %d records" % (topic, produced * fraction,
                                                                                     produced))


def test_cleaner_keeps_the_newest_record_of_every_key():
    base = sbtest.scratch_dir("compaction-basic")
    data = os.path.join(base, "data")
    rng = random.Random(3)
    model = {}
    with server("compaction-basic", ARGS, data_dir=data) as s:
        create_compacted(s, "c")
        recs = []
        for i in range(3000):
            k = b"key-%02d" % rng.randrange(50)
            if rng.randrange(15) == 0:
                recs.append(pb.Record(key=k, tombstone=True))
                model[k] = None
            else:
                v = b"%d-" % i + bytes([rng.randrange(256)]) * rng.randrange(10, 60)
                recs.append(pb.Record(key=k, value=v))
                model[k] = v
        for i in range(0, len(recs), 50):
            r = produce(s, "c", recs[i:i + 50])
            assert r[0].error_code == 0, r
        n = wait_cleaned(s, "c", len(recs), 0.25)
        got = read_all(s, "c")
        check_compacted(got, model, len(recs))
        print("  %d records produced, %d after cleaning" % (len(recs), n))
        # Lookups agree with the log.
        keys = sorted(model)
        res = {x.key: x for x in s.sb.Lookup(pb.LookupRequest(topic="c", keys=keys, partition=0)).results}
        for k in keys:
            assert res[k].found == (model[k] is not None) and (model[k] is None or res[k].record.value == model[k])
        assert "segment_cleaned" in s.read_log()
    # After a restart: the same records, and the cleaner finds nothing more to drop.
    with server("compaction-basic", ARGS, data_dir=data) as s:
        assert read_all(s, "c") == got
    sbtest.cleanup(base)


def test_keyless_records_are_refused_on_compacted_topics():
    with server("compaction-keyless", ARGS) as s:
        create_compacted(s, "c")
        create_compacted(s, "cd", policy="compact,delete")
        for topic in ("c", "cd"):
            r = produce(s, topic, [pb.Record(key=b"k", value=b"v"), pb.Record(value=b"no key")])
            assert r[0].error_code == SC.INVALID_ARGUMENT.value[0], r
            r = produce(s, topic, [pb.Record(key=b"k", value=b"v")])
            assert r[0].error_code == 0, r
        create_topic(s, "plain")
        assert produce(s, "plain", [pb.Record(value=b"no key")])[0].error_code == 0


def test_readers_during_cleaning_see_no_reordering():
    """Consumers read the topic over and over while producers overwrite keys and the cleaner
    swaps segment files: every read is in offset order with each key's values in the order
    they were produced, and nothing readable disappears out of order."""
    with server("compaction-readers", ARGS) as s:
        create_compacted(s, "c")
        stop = threading.Event()
        errors = []

        def reader():
            while not stop.is_set():
                try:
                    got = read_all(s, "c")
                except grpc.RpcError as e:
                    errors.append("read failed: %s" % e)
                    return
                offs = [o for o, _, _, _ in got]
                if offs != sorted(offs):
                    errors.append("reordered")
                last = {}
                for o, k, v, _ in got:
                    seq = int(v.split(b"-")[0])
                    if last.get(k, -1) >= seq:
                        errors.append("key %r went back" % k)
                    last[k] = seq

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for i in range(0, 4000, 40):
            produce(s, "c", [pb.Record(key=b"k%d" % (j % 30), value=b"%d-x" % j) for j in range(i, i + 40)])
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[:5]
        assert "segment_cleaned" in s.read_log()


if __name__ == "__main__":
    run_tests([test_cleaner_keeps_the_newest_record_of_every_key, test_keyless_records_are_refused_on_compacted_topics,
               test_readers_during_cleaning_see_no_reordering])
