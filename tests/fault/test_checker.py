"""The history checker on synthetic histories: a clean one passes, and every anomaly
class is reported, with the right example, and nothing else (so the checker can fail).
Needs no server."""
import os
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from history import History, check, make_value  # noqa: E402

T = "t"
SIZE = 40


class Scenario:
    """A small history on partition 0 of topic t: three acknowledged two-record
    produces at offsets 0-5, an unknown produce that landed at 6-7, an unknown one
    that did not, and a final read of 0-7."""

    def __init__(self):
        self.h = History()
        self.final = {}
        for i in range(3):
            self.produce(["p0-%d" % (2 * i + 1), "p0-%d" % (2 * i + 2)], "ok", offset=2 * i)
        self.produce(["p0-7", "p0-8"], "unknown")
        self.produce(["p0-9", "p0-10"], "unknown")
        self.final = {(T, 0): [(o, make_value("p0-%d" % (o + 1), SIZE)) for o in range(8)]}

    def produce(self, pids, outcome, offset=None, code=None, part=0):
        op = self.h.invoke("producer0", "produce", topic=T, partition=part, payloads=[[p, SIZE] for p in pids])
        if outcome == "ok":
            self.h.ok(op, offset=offset)
        elif outcome == "error":
            self.h.error(op, code, "synthetic")
        else:
            self.h.unknown(op, 14, "synthetic: connection lost")
        return op

    def read(self, start, offsets, stream="consumer0/t/0", values=None):
        values = values or [make_value("p0-%d" % (o + 1), SIZE) for o in offsets]
        self.h.read("consumer0", stream, T, 0, start, list(zip(offsets, values)))

    def final_set(self, offset, value):
        recs = dict(self.final[(T, 0)])
        recs[offset] = value
        self.final[(T, 0)] = sorted(recs.items())

    def check(self, *expected):
        """Checks; exactly the anomaly kinds in expected must be reported."""
        res = check(self.h, self.final)
        found = {k for k, v in res.anomalies.items() if v}
        assert found == set(expected), "expected %s, got:\n%s" % (sorted(expected), res.format())
        assert res.ok == (not expected)
        return res


def test_clean_history_passes():
    s = Scenario()
    s.read(0, [0, 1, 2, 3])
    s.read(0, [4, 5])        # same stream, continues
    s.read(6, [6, 7])        # after a reconnect, resumes where it left
    res = s.check()
    c = res.counts
    assert (c["produce_ok"], c["produce_unknown"], c["produce_fail"]) == (3, 2, 0), c
    assert (c["acked_records"], c["unknown_visible"], c["final_records"], c["read_records"]) == (6, 2, 8, 8), c
    assert "OK" in res.format()


def test_unknown_ops_may_be_present_or_absent():
    s = Scenario()
    s.final[(T, 0)] = s.final[(T, 0)][:6]  # the unknown op at 6-7 did not survive either
    s.check()
    s = Scenario()
    s.produce(["p0-11"], "unknown")  # invoked, never completed: unknown too
    s.final[(T, 0)].append((8, make_value("p0-11", SIZE)))
    s.check()


def test_lost_acknowledged_write():
    s = Scenario()
    s.final[(T, 0)] = s.final[(T, 0)][:5]  # the acknowledged p0-6 at offset 5 is gone; so is 6-7
    res = s.check("lost")
    assert len(res.anomalies["lost"]) == 1 and "p0-6" in res.anomalies["lost"][0], res.format()
    assert "FOUND" in res.format() and "lost: 1" in res.format()


def test_duplicate():
    s = Scenario()
    s.final[(T, 0)].append((8, make_value("p0-3", SIZE)))  # p0-3 again, at 8
    res = s.check("duplicated", "offset_mismatch")  # an acked one found elsewhere is both
    assert "p0-3" in res.anomalies["duplicated"][0] and "8" in res.anomalies["duplicated"][0], res.format()


def test_duplicate_of_an_unknown_write():
    s = Scenario()
    s.final[(T, 0)].append((8, make_value("p0-7", SIZE)))
    res = s.check("duplicated")  # p0-7 twice (its batch is still whole at 6-7)
    assert "p0-7" in res.anomalies["duplicated"][0], res.format()


def test_two_values_at_one_offset():
    s = Scenario()
    # A reader saw the unknown p0-9 at offset 6; the final read has p0-7 there.
    s.read(0, [0, 1, 2, 3, 4, 5])
    s.read(0, [6], values=[make_value("p0-9", SIZE)])
    res = s.check("conflicting")
    assert "t/0@6" in res.anomalies["conflicting"][0], res.format()


def test_failed_produce_becomes_visible():
    s = Scenario()
    s.produce(["p0-11"], "error", code=3)  # INVALID_ARGUMENT: definitely not executed
    s.final[(T, 0)].append((8, make_value("p0-11", SIZE)))
    res = s.check("failed_visible")
    assert "p0-11" in res.anomalies["failed_visible"][0], res.format()
    assert res.counts["produce_fail"] == 1


def test_indefinite_error_may_be_visible():
    s = Scenario()
    s.produce(["p0-11"], "error", code=14)  # UNAVAILABLE: may have been written
    s.produce(["p0-12"], "error", code=8)   # RESOURCE_EXHAUSTED (e.g. disk full after the write)
    s.final[(T, 0)].append((8, make_value("p0-11", SIZE)))
    res = s.check()
    assert res.counts["produce_fail"] == 0 and res.counts["produce_unknown"] == 4, res.counts
    # Even if a writer mislabels such a code as a failure, the checker treats it as unknown.
    s.h.events.append({"id": s.h.invoke("producer0", "produce", topic=T, partition=0,
                                        payloads=[["p0-13", SIZE]]), "phase": "fail", "code": 14,
                       "time": time.monotonic_ns()})
    s.final[(T, 0)].append((9, make_value("p0-13", SIZE)))
    s.check()


def test_skipping_read():
    s = Scenario()
    s.read(0, [0, 1, 2])
    s.read(0, [4, 5])  # 3 never delivered
    res = s.check("skipped")
    assert "offset 4 where 3 was due" in res.anomalies["skipped"][0], res.format()


def test_resume_must_continue_where_it_left():
    s = Scenario()
    s.read(0, [0, 1, 2])
    s.read(4, [4, 5])  # reconnected asking for 4, not 3: skipped 3
    s.check("skipped")
    s = Scenario()
    s.read(2, [3, 4])  # asked for 2, got 3 first
    s.check("skipped")


def test_nonmonotonic_read():
    s = Scenario()
    s.read(0, [0, 1, 2, 3])
    s.read(0, [2, 3, 4])  # went back
    res = s.check("nonmonotonic")
    assert "offset 2 where 4 was due" in res.anomalies["nonmonotonic"][0], res.format()
    s = Scenario()
    s.read(0, [0, 2, 1])  # out of order within one response
    s.check("skipped", "nonmonotonic")


def test_separate_streams_are_independent():
    s = Scenario()
    s.read(0, [0, 1, 2], stream="a")
    s.read(0, [0, 1], stream="b")
    s.read(0, [3], stream="a")
    s.check()


def test_byte_mismatch():
    s = Scenario()
    v = bytearray(make_value("p0-4", SIZE))
    v[-1] ^= 1
    s.final_set(3, bytes(v))
    res = s.check("byte_mismatch")
    assert "t/0@3" in res.anomalies["byte_mismatch"][0] and "p0-4" in res.anomalies["byte_mismatch"][0]


def test_byte_mismatch_in_a_read_during_the_run():
    s = Scenario()
    v = bytearray(make_value("p0-2", SIZE))
    v[10] ^= 0x80
    s.read(0, [0, 1], values=[make_value("p0-1", SIZE), bytes(v)])
    s.check("byte_mismatch", "conflicting")  # and the final read has other bytes at 1


def test_acked_offset_mismatch():
    s = Scenario()
    recs = s.final[(T, 0)]
    recs[0:2], recs[2:4] = recs[2:4], recs[0:2]  # the first two batches swapped places
    s.final[(T, 0)] = [(o, v) for o, (_, v) in enumerate(recs)]
    res = s.check("offset_mismatch")
    assert any("p0-1 acknowledged at t/0@0, found at t/0@2" in e for e in res.anomalies["offset_mismatch"])


def test_other_partition_is_a_mismatch():
    s = Scenario()
    s.final[(T, 0)] = s.final[(T, 0)][:6]
    s.final[(T, 1)] = [(0, make_value("p0-7", SIZE))]  # unknown op 3 landed half in partition 1
    s.check("torn_batch")
    s = Scenario()
    s.final[(T, 0)] = s.final[(T, 0)][:4] + [(4, make_value("p0-7", SIZE)), (5, make_value("p0-8", SIZE))]
    s.final[(T, 1)] = [(0, make_value("p0-5", SIZE)), (1, make_value("p0-6", SIZE))]
    s.check("offset_mismatch")


def test_torn_batch():
    s = Scenario()
    s.final[(T, 0)] = s.final[(T, 0)][:7]  # only the first record of unknown op 3
    res = s.check("torn_batch")
    assert "1 visible" in res.anomalies["torn_batch"][0], res.format()


def test_unexpected_value():
    s = Scenario()
    s.final_set(8, b"garbage that no client wrote")
    s.final_set(9, make_value("p9-1", SIZE))  # well-formed, but never produced
    res = s.check("unexpected")
    assert len(res.anomalies["unexpected"]) == 2, res.format()


def test_final_read_with_a_gap():
    s = Scenario()
    del s.final[(T, 0)][6:]
    s.final[(T, 0)].append((7, make_value("p0-8", SIZE)))  # 6 missing in the final read
    s.check("skipped", "torn_batch")


def test_read_value_that_vanished():
    s = Scenario()
    s.final[(T, 0)] = s.final[(T, 0)][:6]
    s.read(0, list(range(8)))  # a reader saw the unknown op at 6-7, then it was lost
    res = s.check("vanished_read")
    assert len(res.anomalies["vanished_read"]) == 2


def test_malformed_history():
    s = Scenario()
    op = s.produce(["p0-11"], "unknown")
    s.h.ok(op, offset=8)  # a second completion
    s.check("malformed")


def test_history_file_round_trip():
    d = tempfile.mkdtemp(prefix="history-")
    path = os.path.join(d, "h.jsonl")
    h = History(path)
    op = h.invoke("producer0", "produce", topic=T, partition=0, payloads=[["p0-1", SIZE]])
    h.ok(op, offset=0)
    op = h.invoke("producer0", "produce", topic=T, partition=0, payloads=[["p0-2", SIZE]])
    h.ok(op, offset=1)
    h.close()
    final = {(T, 0): {0: make_value("p0-1", SIZE)}}
    res = check(path, final)
    assert not res.ok and len(res.anomalies["lost"]) == 1 and "p0-2" in res.anomalies["lost"][0], res.format()
    times = [e["time"] for e in History.load(path).events]
    assert times == sorted(times) and len(times) == 4
    os.remove(path)
    os.rmdir(d)


def main():
    tests = [f for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for t in tests:
        try:
            t()
            print("PASS %s" % t.__name__)
        except Exception as e:  # noqa: BLE001
            failed += 1
            traceback.print_exc()
            print("FAIL %s: %s" % (t.__name__, e))
    print("%d passed, %d failed" % (len(tests) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
