"""Disk faults under a real streambusd (../../shared/RELIABILITY.md rules 1, 4, 6 and "Disk
faults"): the server's data dir is on a faultfs mount (../faultfs), `--fsync-policy always
--io sync`; producers and consumers record a history (history.py) that is checked against
a final read.

1. power loss x3 under load: nothing acknowledged lost, no anomaly;
2. disk full (ENOSPC): RESOURCE_EXHAUSTED, nothing acknowledged lost, reads keep working,
   writes resume when space returns;
3. fsync EIO: fail-stop (no OK for any request whose data met the failing fsync, later appends
   UNAVAILABLE even after the fault is gone: fsyncgate), everything acknowledged survives a
   restart;
4. frozen disk: deadlines expire, no false ack, health answers, service resumes after thaw.

Skipped (exit 77) without /dev/fuse, root, fusermount3 or the faultfs binary (env FAULTFS).
SB_FAULT_SEED repeats the random cut delays.
"""
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import disk_common as dc  # noqa: E402
from disk_common import pb, wait_for  # noqa: E402
from history import History, check  # noqa: E402
from workload import Consumer, Producer, final_read  # noqa: E402
import sbtest  # noqa: E402

TOPIC = "disk"
ARGS = ["--fsync-policy", "always", "--segment-bytes", "262144"]
SEED = int(os.environ.get("SB_FAULT_SEED", time.time_ns() % 1000000))


def report(res, prod_stats, extra=""):
    print("  producer: %s%s" % (prod_stats, extra))
    print("  " + res.format().replace("\n", "\n  "), flush=True)


class Scenario:
    """A DiskNode with a topic, a History, and cleanup that keeps everything on failure."""

    def __init__(self, name, partitions=2, args=ARGS):
        self.name, self.partitions = name, partitions
        self.node = dc.DiskNode(name, args)
        self.h = History(os.path.join(self.node.base, "history.jsonl"))
        self.t0 = time.time()
        self.ok = False
        self.threads = []

    def __enter__(self):
        self.node.mount()
        self.node.start()
        dc.create_topic(self.node.addr, TOPIC, self.partitions, fsync_policy="always")
        return self

    def __exit__(self, *exc):
        for t in self.threads:
            t.halt.set()
        self.h.close()
        self.node.teardown(keep=not self.ok)
        return False

    def add(self, t):
        self.threads.append(t)
        t.start()
        return t

    def stop_clients(self):
        for t in self.threads:
            t.stop()

    def final_check(self):
        self.h.flush()
        final = final_read(self.node.addr, TOPIC, self.partitions)
        return check(self.h, final)


def test_power_loss_three_cycles():
    """Producer (every 20th request invalid) and a consumer per partition; three times: 300
    more acks, a random 0-50 ms, power cut (powerloss, kill -9, revive), restart on the same
    data dir and port. Then 300 more acks, final read: zero lost acks, no anomaly."""
    rng = random.Random(SEED)
    print("  seed %d (SB_FAULT_SEED to repeat)" % SEED)
    with Scenario("disk-powerloss") as sc:
        node = sc.node
        prod = sc.add(Producer(node.addr, sc.h, TOPIC, sc.partitions, records_per_request=10, value_size=100,
                               window=8, invalid_every=20))
        for p in range(sc.partitions):
            sc.add(Consumer(node.addr, sc.h, TOPIC, p))
        for cycle in range(3):
            target = prod.acked() + 300
            wait_for("%d acks" % target, lambda: prod.acked() >= target, timeout=60)
            time.sleep(rng.uniform(0, 0.05))
            reply = node.power_cut()
            print("  cycle %d: power cut after %d acks: %s (%.1fs)"
                  % (cycle + 1, prod.acked(), reply, time.time() - sc.t0), flush=True)
            node.start()
        target = prod.acked() + 300
        wait_for("acks after the last restart", lambda: prod.acked() >= target, timeout=60)
        sc.stop_clients()
        res = sc.final_check()
        report(res, prod.stats, "; torn tails cut: %d" % node.grep_logs("torn_tail_truncated"))
        assert res.ok, "history anomalies after power loss (history %s)" % sc.h.path
        assert res.counts["produce_ok"] >= 1200 and res.counts["produce_fail"] > 0, res.counts
        assert node.stop() == 0
        sc.ok = True
        print("  %.1fs" % (time.time() - sc.t0))


def test_disk_full():
    """enospc_after 256 KiB under load: the produce requests that meet the full disk fail with
    RESOURCE_EXHAUSTED (the code in the responses), none of them is acknowledged, the server
    stays up and serves reads; then `enospc_after -1`: writes must resume (RELIABILITY.md,
    "Disk faults": "writes resume when space returns"). Finally a restart and the checker:
    nothing acknowledged lost."""
    violations = []
    with Scenario("disk-enospc") as sc:
        node = sc.node
        prod = sc.add(Producer(node.addr, sc.h, TOPIC, sc.partitions, records_per_request=10, value_size=100,
                               window=8, error_backoff=0.01))
        cons = [sc.add(Consumer(node.addr, sc.h, TOPIC, p)) for p in range(sc.partitions)]
        wait_for("200 acks", lambda: prod.acked() >= 200, timeout=60)
        t_full = time.monotonic_ns()
        node.fs.enospc_after(256 * 1024)
        wait_for("a RESOURCE_EXHAUSTED response",
                 lambda: any(c == dc.RESOURCE_EXHAUSTED for _, _, c, _, _ in dc.produce_events(sc.h, t_full)),
                 timeout=60)
        time.sleep(2)  # let the full disk be felt by every partition and request in flight
        st = node.fs.status()
        ev = dc.produce_events(sc.h, since_time=t_full)
        codes = {}
        for _, phase, code, _, _ in ev:
            codes[code if phase != "ok" else "OK"] = codes.get(code if phase != "ok" else "OK", 0) + 1
        print("  disk full: responses after enospc_after (code: count): %s; faultfs enospc_left=%d failed_ops=%d"
              % (codes, st["enospc_left"], st["failed_ops"]))
        print("  server log: log_failed lines %d" % node.grep_logs("event=log_failed"))
        assert codes.get(dc.RESOURCE_EXHAUSTED, 0) > 0, codes
        assert node.alive(), "the server died on ENOSPC"
        # Reads keep working and the server keeps answering.
        assert dc.health(node.addr) == "SERVING", dc.health(node.addr)
        snap = final_read(node.addr, TOPIC, sc.partitions, timeout=20)
        print("  reads while full: %s records" % [len(v) for v in snap.values()])
        acked_while_full = prod.acked()

        t_space = time.monotonic_ns()
        node.fs.enospc_after(-1)
        try:
            wait_for("acks after space returned",
                     lambda: any(p == "ok" for _, p, _, _, _ in dc.produce_events(sc.h, invoked_after=t_space)),
                     timeout=10)
            print("  writes resumed after space returned (%d acks before, %d now)" % (acked_while_full, prod.acked()))
        except AssertionError:
            after = dc.produce_events(sc.h, invoked_after=t_space)
            codes2 = {}
            for _, phase, code, _, _ in after:
                codes2[code if phase != "ok" else "OK"] = codes2.get(code if phase != "ok" else "OK", 0) + 1
            violations.append("contract 'writes resume when space returns': 10 s after enospc_after -1 no "
                              "produce succeeds; responses (code: count) %s" % codes2)
            raise AssertionError(violations[-1])
        first_ok = min(end for _, p, _, _, end in dc.produce_events(sc.h, invoked_after=t_space) if p == "ok")
        print("  writes resumed %.2f s after space returned, without a restart (the log retries every "
              "second)" % ((first_ok - t_space) / 1e9))
        target = prod.acked() + 200
        wait_for("200 more acks", lambda: prod.acked() >= target, timeout=60)
        sc.stop_clients()
        res = sc.final_check()
        report(res, prod.stats, "; consumers %s" % [c.stats for c in cons])
        assert res.ok, "history anomalies after ENOSPC (history %s)" % sc.h.path
        # Restart: what was acknowledged is on disk.
        node.stop()
        node.start()
        res = sc.final_check()
        assert res.ok, "history anomalies after ENOSPC and a restart: %s" % res.format()
        assert node.stop() == 0
        sc.ok = not violations
        print("  %.1fs" % (time.time() - sc.t0))
    assert not violations, violations[0]


def test_fsync_eio_fail_stop():
    """fsync_eio on under load: no request whose data met the failing fsyncs is acknowledged
    (every request invoked after the fault began ends non-OK, with UNAVAILABLE where the
    server answered); the log is sticky-failed, so after fsync_eio off later appends are
    still refused with UNAVAILABLE (fsyncgate: a later fsync's success must not vouch for
    pages a failed one dropped); reads keep working; after a restart the checker finds every
    acknowledged record."""
    with Scenario("disk-eio", partitions=1) as sc:
        node = sc.node
        prod = sc.add(Producer(node.addr, sc.h, TOPIC, 1, records_per_request=10, value_size=100, window=8,
                               error_backoff=0.01))
        sc.add(Consumer(node.addr, sc.h, TOPIC, 0))
        wait_for("300 acks", lambda: prod.acked() >= 300, timeout=60)
        node.fs.fsync_eio(True)
        t_eio = time.monotonic_ns()  # requests invoked from here on can only meet failing fsyncs
        try:
            wait_for("log_failed in the server log", lambda: node.grep_logs("event=log_failed") > 0, timeout=30)
            time.sleep(1)
        finally:
            node.fs.fsync_eio(False)
        t_off = time.monotonic_ns()
        time.sleep(3)  # producing on with healthy fsyncs: the failed state must stick
        assert node.alive(), "the server died on an fsync error"
        ev = dc.produce_events(sc.h, invoked_after=t_eio)
        late = [e for e in ev if e[3] >= t_off]
        codes = {}
        for _, phase, code, _, _ in ev:
            codes[code if phase != "ok" else "OK"] = codes.get(code if phase != "ok" else "OK", 0) + 1
        print("  after fsync_eio on: %d requests invoked (%d after fsync_eio off); outcomes (code: count) %s"
              % (len(ev), len(late), codes))
        oks = [e for e in ev if e[1] == "ok"]
        assert not oks, "acknowledged although every fsync since had failed: ops %s" % [e[0] for e in oks[:5]]
        answered = [e for e in ev if e[2] is not None]
        assert answered and all(e[2] == dc.UNAVAILABLE for e in answered), \
            "error codes other than UNAVAILABLE: %s" % codes
        assert len(late) > 0, "no request was sent after fsync_eio off"
        # Only a restart recovers a failed log: liveness says so (the kubelet restarts the pod);
        # readiness stays SERVING, reads work.
        wait_for("liveness NOT_SERVING", lambda: dc.health(node.addr, "liveness") == "NOT_SERVING", timeout=5)
        assert dc.health(node.addr, "readiness") == "SERVING"
        snap = final_read(node.addr, TOPIC, 1, timeout=20)  # reads keep working
        print("  reads on the failed log: %d records; log_failed lines: %d"
              % (len(snap[(TOPIC, 0)]), node.grep_logs("event=log_failed")))
        rc = node.stop()
        print("  SIGTERM of the server with a failed log: exit %s" % rc)
        node.start()
        assert dc.health(node.addr, "liveness") == "SERVING"
        target = prod.acked() + 200
        wait_for("acks after the restart", lambda: prod.acked() >= target, timeout=60)
        sc.stop_clients()
        res = sc.final_check()
        report(res, prod.stats)
        assert res.ok, "history anomalies after the fsync error (history %s)" % sc.h.path
        assert node.stop() == 0
        sc.ok = True
        print("  %.1fs" % (time.time() - sc.t0))


def test_frozen_disk():
    """freeze under load, with one Produce call per request and a 2 s client deadline (3
    producers): calls end DEADLINE_EXCEEDED (or another non-OK code), no request invoked
    after the freeze is acknowledged while the disk is frozen; readiness turns NOT_SERVING
    (--disk-stall-ms 1000) while liveness stays SERVING; thaw (always, in a finally):
    readiness comes back, service resumes; checker clean."""
    with Scenario("disk-freeze", args=ARGS + ["--disk-stall-ms", "1000"]) as sc:
        node = sc.node
        prods = [sc.add(dc.DeadlineProducer(node.addr, sc.h, TOPIC, sc.partitions, client=i, deadline_s=2.0))
                 for i in range(3)]
        sc.add(Consumer(node.addr, sc.h, TOPIC, 0, client=9))
        acked = lambda: sum(p.acked() for p in prods)  # noqa: E731
        wait_for("150 acks", lambda: acked() >= 150, timeout=60)
        probes = {}
        node.fs.freeze()
        t_freeze = time.monotonic_ns()
        try:
            wait_for("readiness NOT_SERVING on the frozen disk",
                     lambda: dc.health(node.addr, "readiness", timeout=2.0) == "NOT_SERVING", timeout=3.5)
            probes["readiness"] = "NOT_SERVING after %.1fs" % ((time.monotonic_ns() - t_freeze) / 1e9)
            probes["liveness"] = dc.health(node.addr, "liveness", timeout=2.0)
            time.sleep(max(0.0, 4.0 - (time.monotonic_ns() - t_freeze) / 1e9))  # > the 2 s deadline
        finally:
            t_thaw = time.monotonic_ns()
            node.fs.thaw()
        print("  health while frozen: %s" % probes)
        assert probes["liveness"] == "SERVING", probes
        wait_for("readiness SERVING after the thaw", lambda: dc.health(node.addr, "readiness") == "SERVING",
                 timeout=10)
        ev = dc.produce_events(sc.h, invoked_after=t_freeze)
        false_acks = [e for e in ev if e[1] == "ok" and e[4] < t_thaw]
        during = [e for e in ev if e[4] < t_thaw]
        codes = {}
        for _, phase, code, _, _ in during:
            codes[code if phase != "ok" else "OK"] = codes.get(code if phase != "ok" else "OK", 0) + 1
        print("  requests invoked and ended while frozen (code: count): %s" % codes)
        assert not false_acks, "acknowledged while the disk was frozen: %s" % false_acks[:5]
        assert codes.get(dc.DEADLINE_EXCEEDED, 0) > 0, codes
        assert node.alive()
        target = acked() + 150
        wait_for("acks after the thaw", lambda: acked() >= target, timeout=60)
        sc.stop_clients()
        res = sc.final_check()
        report(res, [p.stats for p in prods], "; codes %s" % [p.codes for p in prods])
        assert res.ok, "history anomalies after the freeze (history %s)" % sc.h.path
        assert node.stop() == 0
        sc.ok = True
        print("  %.1fs" % (time.time() - sc.t0))


if __name__ == "__main__":
    dc.skip_if_unavailable()
    tests = [test_power_loss_three_cycles, test_disk_full, test_fsync_eio_fail_stop, test_frozen_disk]
    only = os.environ.get("SB_DISK_ONLY")
    if only:
        tests = [t for t in tests if only in t.__name__]
    sbtest.run_tests(tests)
