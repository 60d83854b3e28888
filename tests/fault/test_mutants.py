"""The disk-fault scenarios must be able to fail: each runs against a server with one
deliberately broken behaviour (common/sb_mutant.h, STREAMBUS_MUTANT in the server's
environment, a -DSB_MUTANTS=ON build, `--io sync`) and the history checker must report
lost acknowledged writes; each also runs without the mutant and must be clean. So every
pair proves the scenario both passes and fails (../../shared/RELIABILITY.md).

- skip_fsync: fdatasync does nothing -> a power cut drops acknowledged records;
- skip_dir_fsync: directory fsyncs do nothing; 4 KiB segments (SB_SEGMENT_BYTES_MIN) roll
  every few requests -> a power cut drops whole new segments with acknowledged records;
- ignore_fsync_error: with `fsync_eio on` acks keep coming -> the power cut drops them
  (without the mutant: fail-stop, nothing acknowledged is lost);
- follower_early_ack: 2 nodes, the follower's data dir on faultfs, ACKS_ALL with
  min_insync_replicas 2; a whole-cluster power cut (powerloss of the follower's disk, kill -9
  of both), restart of the follower alone, Promote -> acknowledged records lost on the
  mutant, none without it (the real test of ACKS_ALL durability on followers).

The topic is created by a server without the mutant, which is then stopped cleanly, so a
mutant cannot lose the topic itself (only what it writes afterwards). A mutant is run for
up to MAX_ATTEMPTS cut/restart attempts until caught; the test fails if it never is.
Skipped (77) without faultfs, /dev/fuse, root, or a server built with SB_MUTANTS.
"""
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import disk_common as dc  # noqa: E402
from disk_common import SC, pb, rpc, wait_for  # noqa: E402
from history import History, check  # noqa: E402
from workload import Producer, final_read  # noqa: E402
import grpc  # noqa: E402
import sbtest  # noqa: E402

TOPIC = "mut"
MAX_ATTEMPTS = int(os.environ.get("SB_MUTANT_ATTEMPTS", "4"))
BASELINE_ATTEMPTS = int(os.environ.get("SB_MUTANT_BASELINES", "1"))  # per single-node pair; the cluster runs 2
SEED = int(os.environ.get("SB_FAULT_SEED", time.time_ns() % 1000000))
RESULTS = []  # (scenario, mutant, attempts, lost, verdict) for the closing summary


def single_node(name, mutant, partitions, topic_config, acks_per_attempt, before_cut=None, after_revive=None,
                max_attempts=MAX_ATTEMPTS, producer_args=None):
    """Power-cut attempts against one server on faultfs. Returns the attempts' check results.
    With a mutant: stops at the first attempt whose check reports lost acknowledged writes.
    Without: every attempt must be clean."""
    rng = random.Random(SEED)
    node = dc.DiskNode(name, ["--fsync-policy", "always", "--segment-bytes", "262144"], mutant=mutant)
    h = History(os.path.join(node.base, "history.jsonl"))
    t0 = time.time()
    kept = True
    results = []
    try:
        node.mount()
        node.start(mutant=None)  # the topic comes from a correct server
        dc.create_topic(node.addr, TOPIC, partitions, fsync_policy="always", **topic_config)
        assert node.stop() == 0
        srv = node.start()
        if mutant:
            assert "event=mutant" in srv.read_log(), "STREAMBUS_MUTANT=%s not taken up:\n%s" % (mutant, srv.read_log())
        for attempt in range(max_attempts if mutant else BASELINE_ATTEMPTS):
            prod = Producer(node.addr, h, TOPIC, partitions, client=attempt,
                            **(producer_args or dict(records_per_request=10, value_size=100, window=8,
                                                    error_backoff=0.01)))
            prod.start()
            try:
                target = acks_per_attempt
                wait_for("%d acks" % target, lambda: prod.acked() >= target, timeout=60)
                if before_cut:
                    before_cut(node, prod)
                time.sleep(rng.uniform(0, 0.03))
                reply = node.power_cut()
                if after_revive:
                    after_revive(node)
                node.start()
            finally:
                prod.stop()
            res = check(h, final_read(node.addr, TOPIC, partitions, missing_ok=True))
            results.append(res)
            lost = len(res.anomalies["lost"])
            print("  %s attempt %d: %s; producer %s; lost %d of %d acked records; other anomalies: %s (%.1fs)"
                  % (mutant or "no mutant", attempt + 1, reply, prod.stats, lost, res.counts["acked_records"],
                     {k: len(v) for k, v in res.anomalies.items() if v and k != "lost"}, time.time() - t0),
                  flush=True)
            if mutant and lost:
                break
            if not mutant:
                assert res.ok, "without the mutant the scenario must pass:\n%s" % res.format()
        print("  " + results[-1].format().replace("\n", "\n  "), flush=True)
        if mutant:
            caught = bool(results[-1].anomalies["lost"])
            RESULTS.append((name, mutant, len(results), len(results[-1].anomalies["lost"]),
                            "CAUGHT" if caught else "NOT CAUGHT"))
            assert caught, "mutant %s not caught in %d attempts" % (mutant, len(results))
        else:
            RESULTS.append((name, "-", len(results), 0, "clean"))
        assert node.stop() == 0
        kept = False
        return results
    finally:
        h.close()
        node.teardown(keep=kept)


# ---- skip_fsync ----

def test_skip_fsync_caught():
    single_node("mut-skipfsync", "skip_fsync", 2, {}, 200)


def test_skip_fsync_baseline_clean():
    single_node("mut-skipfsync-base", None, 2, {}, 200)


# ---- skip_dir_fsync: 4 KiB segments roll every ~3 requests ----

SMALL_SEGMENTS = dict(segment_bytes=4096)  # SB_SEGMENT_BYTES_MIN (common/sb_limits.h)


def wait_for_a_roll(node, prod):
    """The cut lands after at least one roll made by the current process."""
    wait_for("a segment roll", lambda: node.current.read_log().count("event=segment_rolled") >= 2, timeout=30)


def test_skip_dir_fsync_caught():
    single_node("mut-skipdir", "skip_dir_fsync", 2, SMALL_SEGMENTS, 150, before_cut=wait_for_a_roll)


def test_skip_dir_fsync_baseline_clean():
    single_node("mut-skipdir-base", None, 2, SMALL_SEGMENTS, 150, before_cut=wait_for_a_roll)


# ---- ignore_fsync_error: fsync_eio on before the cut ----

def eio_then_wait(node, prod):
    """fsync_eio on; then up to 3 s for 50 more acks (the mutant's false acks; a correct server
    fails the log and acknowledges nothing more)."""
    before = prod.acked()
    node.fs.fsync_eio(True)
    deadline = time.time() + 3
    while time.time() < deadline and prod.acked() < before + 50:
        time.sleep(0.02)
    print("    acks while every fsync failed: %d" % (prod.acked() - before), flush=True)


def eio_off(node):
    node.fs.fsync_eio(False)


def test_ignore_fsync_error_caught():
    single_node("mut-ignoreeio", "ignore_fsync_error", 1, {}, 200, before_cut=eio_then_wait, after_revive=eio_off)


def test_ignore_fsync_error_baseline_clean():
    single_node("mut-ignoreeio-base", None, 1, {}, 200, before_cut=eio_then_wait, after_revive=eio_off)


# ---- follower_early_ack: a 2-node cluster, the follower on faultfs ----

def describe(addr, topic):
    ch = grpc.insecure_channel(addr)
    try:
        return rpc.AdminStub(ch).DescribeTopic(pb.DescribeTopicRequest(name=topic), timeout=5)
    finally:
        ch.close()


def promote(addr, node_id):
    """Admin.Promote, clean first; unclean if refused as out of sync. Returns (response, unclean)."""
    ch = grpc.insecure_channel(addr)
    try:
        stub = rpc.AdminStub(ch)
        try:
            return stub.Promote(pb.PromoteRequest(node_id=node_id), timeout=10), False
        except grpc.RpcError as e:
            if e.code() != SC.FAILED_PRECONDITION:
                raise
            print("    clean Promote refused: %s" % e.details())
            return stub.Promote(pb.PromoteRequest(node_id=node_id, unclean=True), timeout=10), True
    finally:
        ch.close()


def cluster_attempt(name, mutant, attempt, acks):
    """One fresh 2-node cluster: node 0 leads (data on a plain dir), node 1 follows (data on
    faultfs, STREAMBUS_MUTANT=mutant). ACKS_ALL load, whole-cluster power cut, follower alone
    restarted and promoted, final read from it. Returns the check result."""
    p0, p1 = sbtest.free_port(), sbtest.free_port()
    peers = "0=127.0.0.1:%d,1=127.0.0.1:%d" % (p0, p1)
    common = ["--peers", peers, "--fsync-policy", "always", "--segment-bytes", "262144",
              "--replica-lag-max-ms", "2000"]
    fol = dc.DiskNode(name, common + ["--node-id", "1"], mutant=mutant, port=p1)
    lead = dc.EnvServer(data_dir=os.path.join(fol.base, "n0", "data"), listen="127.0.0.1:%d" % p0,
                        args=["--io", "sync", "--node-id", "0"] + common)
    h = History(os.path.join(fol.base, "history.jsonl"))
    kept = True
    t0 = time.time()
    try:
        fol.mount()
        lead.spawn()
        fol.start()
        lead.wait_serving(30)
        if mutant:
            assert "event=mutant" in fol.current.read_log()
        wait_for("the follower connected", lambda: "event=follower_connection" in lead.read_log(), timeout=30)
        dc.create_topic(lead.addr, TOPIC, 1, fsync_policy="always", min_insync_replicas=2)
        wait_for("ISR of 2", lambda: len(describe(lead.addr, TOPIC).partitions[0].in_sync_replicas) == 2,
                 timeout=30)
        prod = Producer(lead.addr, h, TOPIC, 1, client=attempt, acks=pb.ACKS_ALL, records_per_request=10,
                        value_size=100, window=8, follow_leader=False)
        prod.start()
        try:
            wait_for("%d ACKS_ALL acks" % acks, lambda: prod.acked() >= acks, timeout=60)
            time.sleep(random.Random(SEED + attempt).uniform(0, 0.03))
            # Whole-cluster power cut: the follower's disk forgets what is not durable and dies,
            # then both processes die (the leader's disk is never used again).
            reply = fol.power_cut(kill_also=[lead])
        finally:
            prod.stop()
        fol.start()
        resp, unclean = promote(fol.addr, 1)
        # Node 1 now leads alone; with min_insync_replicas 2 readers see only what two nodes
        # hold (docs/REPLICATION.md), so node 0 comes back — as a follower of epoch 2 that cuts
        # whatever only it had — and node 1 becomes readable to its end.
        lead.spawn()
        lead.wait_serving(30)
        wait_for("node 1 readable to its end", lambda: (lambda p: p.high_watermark == p.log_end_offset)(
            describe(fol.addr, TOPIC).partitions[0]), timeout=30)
        res = check(h, final_read(fol.addr, TOPIC, 1, missing_ok=True))
        lost = len(res.anomalies["lost"])
        print("  %s attempt %d: %s; promoted (unclean=%s, was_in_sync=%s, records_at_risk=%d); producer %s; "
              "lost %d of %d acked records; other anomalies %s (%.1fs)"
              % (mutant or "no mutant", attempt + 1, reply, unclean, resp.was_in_sync, resp.records_at_risk,
                 prod.stats, lost, res.counts["acked_records"],
                 {k: len(v) for k, v in res.anomalies.items() if v and k != "lost"}, time.time() - t0), flush=True)
        if not mutant and not res.ok:
            print("  " + res.format().replace("\n", "\n  "))
            return res  # kept for inspection
        fol.stop()
        kept = False
        return res
    finally:
        h.close()
        if lead.proc and lead.proc.poll() is None:
            lead.kill9()
        fol.teardown(keep=kept)


def test_follower_early_ack_caught():
    for attempt in range(MAX_ATTEMPTS):
        res = cluster_attempt("mut-folack", "follower_early_ack", attempt, 300)
        if res.anomalies["lost"]:
            break
    print("  " + res.format().replace("\n", "\n  "), flush=True)
    caught = bool(res.anomalies["lost"])
    RESULTS.append(("mut-folack", "follower_early_ack", attempt + 1, len(res.anomalies["lost"]),
                    "CAUGHT" if caught else "NOT CAUGHT"))
    assert caught, "follower_early_ack not caught in %d attempts" % (attempt + 1)


def test_follower_acks_all_baseline_clean():
    n = max(2, BASELINE_ATTEMPTS)
    for attempt in range(n):
        res = cluster_attempt("mut-folack-base", None, attempt, 300)
        assert res.ok, "ACKS_ALL lost acknowledged writes on the promoted follower:\n%s" % res.format()
    RESULTS.append(("mut-folack-base", "-", n, 0, "clean"))


def summary():
    print("mutant summary (scenario, mutant, attempts, lost acked records, verdict):")
    for r in RESULTS:
        print("  %-18s %-20s %d %6d %s" % r)


if __name__ == "__main__":
    dc.skip_if_unavailable()
    if not dc.server_has_mutants():
        print("skipped: %s was built without -DSB_MUTANTS=ON" % sbtest.STREAMBUSD)
        sys.exit(sbtest.SKIP)
    print("seed %d (SB_FAULT_SEED to repeat)" % SEED)
    tests = [test_skip_fsync_caught, test_skip_fsync_baseline_clean,
             test_skip_dir_fsync_caught, test_skip_dir_fsync_baseline_clean,
             test_ignore_fsync_error_caught, test_ignore_fsync_error_baseline_clean,
             test_follower_early_ack_caught, test_follower_acks_all_baseline_clean]
    only = os.environ.get("SB_MUTANT_ONLY")
    if only:
        tests = [t for t in tests if only in t.__name__]
    import atexit
    atexit.register(summary)
    sbtest.run_tests(tests)
