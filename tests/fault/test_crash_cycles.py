"""Real processes: kill -9 streambusd under produce load (fsync policy always), restart
it on the same data dir and port, three times; then read everything back and check the
recorded history: no acknowledged write lost, and none of the other anomalies of
history.py (duplicates, two values at one offset, failed writes visible, acked offset
mismatch, skipping or non-monotonic reads, byte mismatches, torn batches).

Note: kill -9 keeps the page cache, so this does not test fsync itself (the in-process
crash simulation and the FUSE tool do); it tests recovery, acknowledgement order, and
the clients' view across crashes (../../shared/RELIABILITY.md, "Real processes").

SB_FAULT_SEED fixes the random kill delays (printed on every run).
"""
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "integration")]
import sbtest  # noqa: E402
from sbtest import pb  # noqa: E402
from history import History, check  # noqa: E402
from workload import Consumer, Producer, final_read  # noqa: E402

TOPIC = "crash"
PARTITIONS = 2
ARGS = ["--fsync-policy", "always", "--segment-bytes", "262144"]


def wait_for(what, fn, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


class Node:
    """One data dir and one fixed port across restarts; every process's log is kept."""

    def __init__(self, name):
        self.base = sbtest.scratch_dir(name)
        self.data = os.path.join(self.base, "data")
        self.listen = "127.0.0.1:%d" % sbtest.free_port()
        self.servers = []

    def start(self):
        for attempt in range(50):  # the old process's port can take a moment to come free
            s = sbtest.Server(data_dir=self.data, args=ARGS, listen=self.listen)
            try:
                s.start()
                break
            except RuntimeError as e:
                if s.proc.poll() is None:
                    s.kill9()
                if "address" not in str(e).lower() or attempt == 49:
                    raise
                time.sleep(0.1)
        self.servers.append(s)
        return s

    def recovery_events(self):
        """torn_tail_truncated lines of every process so far (recovery cut a partial batch)."""
        return sum(s.read_log().count("torn_tail_truncated") for s in self.servers)

    @property
    def current(self):
        return self.servers[-1]

    def kill9(self):
        self.current.kill9()
        self.current.check_log()

    def stop(self):
        s = self.current
        rc = s.stop()
        s.check_log()
        assert rc == 0, "streambusd exited %s:\n%s" % (rc, s.read_log()[-3000:])


def run(name, cycles, kill_after_acks, producer_args, consumers=True, before_kill=None, after_kill=None,
        expect_ok=True):
    """Runs the workload through `cycles` kill -9/restart cycles; returns the check result.
    before_kill(node) waits for a moment to kill; after_kill(node) may damage the data dir."""
    seed = int(os.environ.get("SB_FAULT_SEED", time.time_ns() % 1000000))
    rng = random.Random(seed)
    print("  %s: seed %d (SB_FAULT_SEED=%d to repeat the kill delays)" % (name, seed, seed), flush=True)
    node = Node(name)
    t0 = time.time()
    srv = node.start()
    srv.admin.CreateTopic(pb.CreateTopicRequest(name=TOPIC, partitions=PARTITIONS,
                                                config=pb.TopicConfig(fsync_policy="always")), timeout=10)
    h = History(os.path.join(node.base, "history.jsonl"))
    prod = Producer(srv, h, TOPIC, PARTITIONS, **producer_args)
    cons = [Consumer(srv, h, TOPIC, p) for p in range(PARTITIONS)] if consumers else []
    ok = False
    try:
        prod.start()
        for c in cons:
            c.start()
        for cycle in range(cycles):
            target = prod.acked() + kill_after_acks
            wait_for("%d acknowledgements" % target, lambda: prod.acked() >= target)
            if before_kill:
                before_kill(node)
            time.sleep(rng.uniform(0, 0.05))  # land somewhere inside the requests in flight
            node.kill9()
            if after_kill:
                after_kill(node)
            print("  cycle %d: killed after %d acknowledged requests (%.1fs)"
                  % (cycle + 1, prod.acked(), time.time() - t0), flush=True)
            node.start()
        target = prod.acked() + kill_after_acks
        wait_for("acknowledgements after the last restart", lambda: prod.acked() >= target)
        prod.stop()
        for c in cons:
            c.stop()
        h.close()
        final = final_read(node.current, TOPIC, PARTITIONS)
        if cons:
            print("  consumers read %s records in %s sessions"
                  % ([c.stats["records"] for c in cons], [c.stats["sessions"] for c in cons]))
        res = check(h, final)
        print("  producer: %s; recovery cut %d torn tails in %d restarts"
              % (prod.stats, node.recovery_events(), cycles))
        print("  " + res.format().replace("\n", "\n  "), flush=True)
        if expect_ok:
            assert res.ok, "history anomalies (history in %s)" % h.path
        c = res.counts
        assert c["produce_ok"] >= (cycles + 1) * kill_after_acks, c
        node.stop()
        ok = True
        print("  %s: %.1fs" % (name, time.time() - t0))
        return res
    finally:
        prod.halt.set()
        for c in cons:
            c.halt.set()
        if node.current.proc.poll() is None:
            node.current.stop()
        if ok:
            sbtest.cleanup(node.base)
        else:
            print("  kept for inspection: %s" % node.base)


def test_kill9_under_load_three_cycles():
    """Small requests (10 records of 100-byte values), 8 in flight, 2 partitions, a
    consumer per partition following the tail; every 20th request invalid (a definite
    failure that must never become visible)."""
    res = run("crash-cycles", cycles=3, kill_after_acks=600,
              producer_args=dict(records_per_request=10, value_size=100, window=8, invalid_every=20))
    assert res.counts["produce_fail"] > 0, res.counts  # the invalid requests were answered


def test_kill9_during_large_batches():
    """Short mode: requests of 500 records of 8000 bytes (4 MB each), 2 in flight: the
    kill lands while a large batch is being written; it must be whole or absent."""
    run("crash-large", cycles=2, kill_after_acks=3, consumers=False,
        producer_args=dict(records_per_request=500, value_size=8000, window=2))


def newest_segment(node, partition=0):
    d = os.path.join(node.data, "topics", TOPIC, str(partition))
    logs = sorted(f for f in os.listdir(d) if f.endswith(".log"))
    return os.path.join(d, logs[-1])


def test_checker_catches_a_truncated_log():
    """Mutant: after the kill, cut the newest segment of partition 0 in half (as a disk
    that lost acknowledged data would). The same pipeline must report lost writes, so
    the scenario above can fail."""
    def big_enough(node):  # half the segment then holds acknowledged batches
        wait_for("a newest segment of 64-192 KiB", lambda: 65536 <= os.path.getsize(newest_segment(node))
                 <= 196608)

    def cut(node):
        path = newest_segment(node)
        size = os.path.getsize(path)
        os.truncate(path, size // 2 - 7)  # mid-batch: recovery also cuts a torn tail
        print("  mutant: cut %s from %d to %d bytes" % (os.path.basename(path), size, size // 2 - 7))

    res = run("crash-mutant", cycles=1, kill_after_acks=100, before_kill=big_enough, after_kill=cut,
              expect_ok=False, producer_args=dict(records_per_request=10, value_size=100, window=8))
    assert len(res.anomalies["lost"]) > 0, res.format()


if __name__ == "__main__":
    if not os.path.exists(sbtest.STREAMBUSD) and not os.environ.get("STREAMBUSD"):
        print("STREAMBUSD not set: skipped")
        sys.exit(sbtest.SKIP)
    sbtest.run_tests([test_kill9_under_load_three_cycles, test_kill9_during_large_batches,
                      test_checker_catches_a_truncated_log])
