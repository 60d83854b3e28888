"""Power loss on the leader of a 3-node cluster under ACKS_ALL load, promotion of the in-sync
follower with the most data, return of the old leader: nothing acknowledged may be lost
(../../shared/RELIABILITY.md rules 1-3; docs/REPLICATION.md, docs/OPERATIONS.md "Promoting").

Three streambusd on 127.0.0.1 (fixed free ports), each data dir on its own faultfs mount
(disk_common.DiskNode: `--io sync`), `--fsync-policy always` (also the default), 256 KiB segments,
`--replica-lag-max-ms 2000`. Topic of 2 partitions, replication_factor 3, min_insync_replicas 2.

  1. ACKS_ALL producer on node 0 (10 records of 100 bytes a request, 8 in flight, every 25th
     request invalid), a consumer per partition (partition 0 reads from node 0, the first leader to
     lose power, across its cut and return; partition 1 from node 2), all in one History;
  2. after 400 acks (and a random 0-50 ms), two cycles of:
     a. power cut of the leader under load (faultfs `powerloss`: every write not fsynced is
        undone and the disk dies; kill -9; `revive`). Cut 1 lands while the leader has writes
        not yet fsynced (DiskNode.power_cut waits for some); before cut 2 both followers are
        SIGSTOPped for 300 ms, so the leader fsyncs requests in flight that no follower has: a
        durable divergent suffix (a follower that falls behind for a moment, widened);
     b. at once (inside the followers' in-sync lease, so a clean promotion must be accepted)
        Admin.Promote of the follower with the most data (sum of log ends), epoch + 1; the other
        follower follows it;
     c. a new ACKS_ALL producer opened on the *other* follower must follow the `streambus-leader`
        redirect to the new leader; 300 acks with 2 nodes in sync;
     d. the old leader restarts on its revived disk: it must adopt the epoch, follow, cut its
        divergent suffix (`log_truncated` / `replica_truncated` lines, printed) and rejoin the
        in-sync set; 200 more acks with 3 in sync;
  3. clients stopped; every node converged; final read from the last leader; history check
     clean, refused-before-write produces invisible, segment files of every partition
     byte-identical on the 3 nodes.

Self-test (must FAIL, proving the scenario can): SB_CLPOWER_BREAK=lagging SIGSTOPs node 2 before
cut 1 until it leaves the in-sync set, lets 200 more ACKS_ALL acks through on nodes 0 and 1, then
cuts the power and promotes the lagging node 2 (`unclean` once the clean Promote is refused): the
checker must report `lost`. SB_CLPOWER_BREAK=follower_early_ack runs nodes 1 and 2 with that
mutant (a -DSB_MUTANTS=ON build): it goes uncaught here, since only a leader's disk loses power and
a follower's unsynced appends survive in its page cache (test_mutants.py cuts the follower's disk).

Skipped (77) without faultfs, /dev/fuse, root or fusermount3. SB_FAULT_SEED repeats the delay.
On failure the scratch directory (data dirs, server logs, history.jsonl) is kept and printed.
"""
import os
import random
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import disk_common as dc  # noqa: E402  (sets up sys.path for sbtest and faultfsctl)
from disk_common import SC, pb, wait_for  # noqa: E402
import grpc  # noqa: E402
import sbtest  # noqa: E402
import net_cluster as nc  # noqa: E402  (only its query/wait/compare helpers; no namespaces)
from history import History, check  # noqa: E402
from workload import Consumer, Producer, final_read  # noqa: E402

TOPIC = "clpower"
PARTS = 2
LAG_MS = 2000
WORKLOAD = dict(records_per_request=10, value_size=100, window=8, invalid_every=25, error_backoff=0.01)
SEED = int(os.environ.get("SB_FAULT_SEED", time.time_ns() % 1000000))
BREAK = os.environ.get("SB_CLPOWER_BREAK", "")
STALL_MS = 300  # the second cut: followers stalled first (well inside their 2 s in-sync lease)
TRUNC_EVENTS = ("event=replica_truncated", "event=log_truncated", "event=torn_tail_truncated")


def log(msg):
    print("  " + msg, flush=True)


class View:
    """The shape net_cluster's helpers expect of a cluster: nodes[i] with .admin, data_dir(i)."""

    def __init__(self, disk_nodes):
        self.disk = disk_nodes

    @property
    def nodes(self):
        return [n.current for n in self.disk]

    def data_dir(self, i):
        return self.disk[i].data


def ends(node):
    return [p.log_end_offset for p in nc.describe(node.current, TOPIC).partitions]


def all_three(s):
    return len(s) == PARTS and all(x == {0, 1, 2} for x in s)


def wait_acks(p, n, what, timeout=60):
    target = p.acked() + n
    wait_for("%s: %d acks (producer %s)" % (what, target, p.stats), lambda: p.acked() >= target,
             timeout=timeout, interval=0.02)


def promote(node, node_id, t_ref, unclean_ok):
    """Admin.Promote, clean. t_ref: when the followers last could catch up. A refusal
    (FAILED_PRECONDITION) fails the test while the in-sync lease must still run; after it (a slow
    machine) or when unclean_ok, the operator's `unclean` follows."""
    admin = node.current.admin
    try:
        return admin.Promote(pb.PromoteRequest(node_id=node_id), timeout=10), False
    except grpc.RpcError as e:
        waited = time.time() - t_ref
        if e.code() != SC.FAILED_PRECONDITION:
            raise
        if not unclean_ok and waited < LAG_MS / 1000.0 * 0.75:
            raise AssertionError("clean Promote of in-sync node %d refused %.2fs after it could last catch up, "
                                 "within its in-sync lease (%d ms): %s" % (node_id, waited, LAG_MS, e.details()))
        log("clean Promote of node %d refused %.2fs after it could last catch up (%s): promoting with unclean"
            % (node_id, waited, e.details()))
        return admin.Promote(pb.PromoteRequest(node_id=node_id, unclean=True), timeout=10), True


def cut(node, followers, stall_ms):
    """DiskNode.power_cut of node. stall_ms > 0: the followers are SIGSTOPped that long first, so
    the leader appends and fsyncs the requests in flight that no follower gets: a durable
    divergent suffix the old leader must truncate when it returns. With 0 the cut lands while the
    leader has writes not yet fsynced (power_cut waits for some), which it undoes.
    Returns faultfs's powerloss reply and when the followers last could catch up."""
    if not stall_ms:
        reply = node.power_cut()
        return reply, time.time()
    procs = [f.current.proc for f in followers]
    t_stop = time.time()
    for p in procs:
        os.kill(p.pid, signal.SIGSTOP)
    try:
        time.sleep(stall_ms / 1000.0)
        return node.power_cut(want_unsynced=False), t_stop
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGCONT)


def test_leader_power_loss_promotion():
    t0 = time.time()
    rng = random.Random(SEED)
    ports = [sbtest.free_port() for _ in range(3)]
    peers = ",".join("%d=127.0.0.1:%d" % (i, p) for i, p in enumerate(ports))
    base = sbtest.scratch_dir("clpower")
    common = ["--peers", peers, "--fsync-policy", "always", "--segment-bytes", "262144",
              "--replica-lag-max-ms", str(LAG_MS)]
    fol_mutant = "follower_early_ack" if BREAK == "follower_early_ack" else None
    nodes = [dc.DiskNode("n%d" % i, common + ["--node-id", str(i)], base=os.path.join(base, "n%d" % i),
                         port=ports[i], mutant=fol_mutant if i else None) for i in range(3)]
    c = View(nodes)
    h = History(os.path.join(base, "history.jsonl"))
    clients, sigstopped = [], []
    ok = False
    try:
        for n in nodes:
            n.mount()
        for n in nodes:
            n.start()
        lead = nodes[0].current
        if fol_mutant:
            assert all("event=mutant" in nodes[i].current.read_log() for i in (1, 2)), "STREAMBUS_MUTANT not taken up"
        wait_for("both followers connected", lambda: lead.read_log().count("event=follower_connection") >= 2,
                 timeout=30)
        lead.admin.CreateTopic(pb.CreateTopicRequest(name=TOPIC, partitions=PARTS, replication_factor=3,
                                                     config=pb.TopicConfig(fsync_policy="always",
                                                                           min_insync_replicas=2)), timeout=20)
        nc.wait_isr(lead, TOPIC, all_three, "in-sync set {0,1,2}", timeout=30)
        log("3 nodes on faultfs up, topic %s (2 partitions, rf 3, min_insync 2) in sync after %.1fs; seed %d%s"
            % (TOPIC, time.time() - t0, SEED, "; SELF-TEST " + BREAK if BREAK else ""))

        # ---- ACKS_ALL load on node 0; then two cycles of cut, promotion, return of the old leader
        prod = Producer(nodes[0].addr, h, TOPIC, PARTS, client=0, acks=pb.ACKS_ALL, **WORKLOAD)
        cons = [Consumer(nodes[0].addr, h, TOPIC, 0), Consumer(nodes[2].addr, h, TOPIC, 1)]
        for t in [prod] + cons:
            clients.append(t)
            t.start()
        wait_acks(prod, 400, "before the first power cut")
        leader, lines, trunc_total, prods = 0, [], 0, [prod]
        for cyc, stall in enumerate((0, STALL_MS)):
            epoch = cyc + 2
            fols = [i for i in range(3) if i != leader]
            lagging = BREAK == "lagging" and cyc == 0
            if lagging:  # fols[1] stops answering: it leaves the in-sync set, acks go on without it
                os.kill(nodes[fols[1]].current.proc.pid, signal.SIGSTOP)
                sigstopped.append(nodes[fols[1]].current.proc)
                nc.wait_isr(nodes[leader].current, TOPIC, lambda s: all(x == {leader, fols[0]} for x in s),
                            "node %d out of sync" % fols[1], timeout=30)
                wait_acks(prod, 200, "ACKS_ALL without node %d" % fols[1])
            time.sleep(rng.uniform(0, 0.05))
            reply, t_ref = cut(nodes[leader], [nodes[i] for i in fols], stall)
            t_kill = time.time()
            if lagging:
                os.kill(sigstopped.pop().pid, signal.SIGCONT)
            # the follower with the most data (the lagging one in the self-test)
            e = {i: ends(nodes[i]) for i in fols}
            new = fols[1] if lagging else max(fols, key=lambda i: sum(e[i]))
            other = fols[0] if new == fols[1] else fols[1]
            resp, unclean = promote(nodes[new], new, t_ref, unclean_ok=lagging)
            promo = "node %d promoted %.2fs after the cut: epoch %d, was_in_sync=%s, records_at_risk=%d, unclean=%s" % (
                new, time.time() - t_kill, resp.leader_epoch, resp.was_in_sync, resp.records_at_risk, unclean)
            prod.stop()
            log("cut %d: leader %d lost power after %d acks (followers stalled %d ms first): %s; follower log ends "
                "%s; %s" % (cyc + 1, leader, prod.acked(), stall, reply, e, promo))
            assert resp.leader_id == new and resp.leader_epoch == epoch, resp
            assert lagging or unclean or resp.was_in_sync, resp  # unclean: only after the lease (promote())
            newn = nodes[new].current
            wait_for("node %d follows epoch %d" % (other, epoch),
                     lambda: nc.cluster_info(nodes[other].current).leader_epoch == epoch, timeout=20)
            nc.wait_isr(newn, TOPIC, lambda s: len(s) == PARTS and all(x == {new, other} for x in s),
                        "in-sync set {%d,%d} on node %d" % (new, other, new), timeout=30)
            # a producer opened on the other follower follows the redirect to the new leader
            prod = Producer(nodes[other].addr, h, TOPIC, PARTS, client=cyc + 1, acks=pb.ACKS_ALL, **WORKLOAD)
            clients.append(prod)
            prods.append(prod)
            prod.start()
            wait_acks(prod, 300, "ACKS_ALL on the new leader %d" % new)
            assert prod.addr == nodes[new].addr, "producer at %s, not at the new leader %s" % (prod.addr, newn.addr)
            # the old leader returns on its revived disk: follows, cuts its divergent suffix, catches up
            t_r = time.time()
            old = nodes[leader].start()
            wait_for("restarted node %d follows epoch %d" % (leader, epoch),
                     lambda: nc.cluster_info(old).leader_epoch == epoch, timeout=30)
            nc.wait_isr(newn, TOPIC, all_three, "node %d back in the in-sync set" % leader, timeout=60)
            trunc = [ln.strip() for ln in old.read_log().splitlines() if any(ev in ln for ev in TRUNC_EVENTS)]
            trunc_total += len(trunc)
            log("node %d restarted: follows node %d, in sync %.2fs after its start; truncation lines:%s" % (
                leader, new, time.time() - t_r, "".join("\n    " + ln for ln in trunc) or " none"))
            lines.append("cut %d: leader %d after %d acks, %s; %d truncation line(s) on node %d"
                         % (cyc + 1, leader, prods[-2].acked(), promo, len(trunc), leader))
            wait_acks(prod, 200, "with 3 in sync again")
            leader = new

        # ---- stop, converge, final read from the leader, check, compare segments
        for t in clients:
            t.stop()
        h.close()
        conv = nc.wait_converged(c, TOPIC, leader, [i for i in range(3) if i != leader], timeout=60)
        final = final_read(nodes[leader].addr, TOPIC, PARTS)
        res = check(h, final)
        problems, nref = nc.net_extra_checks(h, final)
        log(res.format().replace("\n", "\n  "))
        log("producers %s; consumers read %s records; produce outcomes (phase/code) %s" % (
            [p.stats for p in prods], [cs.stats["records"] for cs in cons], nc.produce_outcomes(h)))
        assert not problems, "\n".join(problems[:5])
        assert res.ok, "history anomalies after the leader power cuts and promotions (history in %s)" % h.path
        segs = nc.compare_segments(c, TOPIC, PARTS, [0, 1, 2])
        log("converged at log ends %s; segment files byte-identical on the 3 nodes: %s per partition; "
            "%d refused-before-write produces invisible" % (conv, segs, nref))
        print("summary: %d acked requests (%d records), lost 0; final leader %d; %d truncation line(s); %.1fs\n  %s"
              % (res.counts["produce_ok"], res.counts["acked_records"], leader, trunc_total, time.time() - t0,
                 "\n  ".join(lines)), flush=True)
        order = [i for i in range(3) if i != leader] + [leader]  # followers first: no hand-over to wait for
        rcs = {i: nodes[i].stop() for i in order}
        assert all(rc == 0 for rc in rcs.values()), "exit statuses on SIGTERM: %s" % rcs
        ok = True
    except BaseException:
        for i, n in enumerate(nodes):
            for s in n.servers:
                try:
                    log("---- node %d %s (tail):\n%s" % (i, s.log_path, s.read_log()[-1500:]))
                except OSError:
                    pass
        raise
    finally:
        for p in sigstopped:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
        for t in clients:
            t.halt.set()
            if getattr(t, "_call", None) is not None:
                t._call.cancel()
        for t in clients:
            t.join(10)
        h.close()
        for n in nodes:
            n.teardown(keep=not ok)
        if ok:
            sbtest.cleanup(base)
        else:
            print("  kept for inspection: %s" % base, flush=True)


if __name__ == "__main__":
    dc.skip_if_unavailable()
    if BREAK == "follower_early_ack" and not dc.server_has_mutants():
        print("skipped: SB_CLPOWER_BREAK=follower_early_ack needs a -DSB_MUTANTS=ON streambusd")
        sys.exit(sbtest.SKIP)
    sbtest.run_tests([test_leader_power_loss_promotion])
