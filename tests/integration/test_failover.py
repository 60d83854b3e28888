"""Failover: a 3-node cluster loses its leader under ACKS_ALL load; an in-sync
follower is promoted; every acknowledged record is there byte for byte, exactly
once; the old leader comes back as a follower, cuts any suffix it wrote alone,
and every node ends byte-identical (../shared/RELIABILITY.md rules 1-3)."""
import os
import socket
import threading
import time

import grpc

import sbtest
from sbtest import pb, rpc

SC = grpc.StatusCode


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    def __init__(self, n=3, name="failover", extra=()):
        self.base = sbtest.scratch_dir(name)
        self.ports = [free_port() for _ in range(n)]
        self.peers = ",".join("%d=127.0.0.1:%d" % (i, p) for i, p in enumerate(self.ports))
        self.extra = list(extra)
        self.nodes = [None] * n

    def start(self, i):
        args = ["--listen", "127.0.0.1:%d" % self.ports[i], "--node-id", str(i), "--peers", self.peers,
                "--replica-lag-max-ms", "1000", "--segment-bytes", "262144"] + self.extra
        os.makedirs(os.path.join(self.base, "n%d" % i), exist_ok=True)
        s = sbtest.Server(data_dir=os.path.join(self.base, "n%d" % i, "data"), args=args)
        self.nodes[i] = s.start()
        return s

    def stop_all(self):
        for s in self.nodes:
            if s and s.proc and s.proc.poll() is None:
                s.stop()


def wait_for(what, fn, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def describe(s, topic):
    return s.admin.DescribeTopic(pb.DescribeTopicRequest(name=topic), timeout=5)


def read_all(s, topic, partition=0):
    """Every record of a partition up to the node's high watermark."""
    out = []
    for resp in s.sb.Consume(pb.ConsumeRequest(topic=topic, partition=partition, start=pb.START_EARLIEST,
                                               stop=pb.STOP_AT_END), timeout=30):
        out.extend(resp.records)
    return out


class Producer(threading.Thread):
    """ACKS_ALL requests of 10 records with unique values; keeps what was acknowledged."""

    def __init__(self, addr, topic):
        super().__init__(daemon=True)
        self.addr, self.topic = addr, topic
        self.stop = threading.Event()
        self.acked = {}  # value -> offset
        self.failures = 0
        self.seq = 0

    def run(self):
        ch = grpc.insecure_channel(self.addr)
        stub = rpc.StreamBusStub(ch)
        sent = {}

        def gen():
            while not self.stop.is_set():
                recs = []
                for _ in range(10):
                    self.seq += 1
                    recs.append(pb.Record(key=b"k%d" % (self.seq % 7), value=b"v-%08d" % self.seq))
                rid = self.seq
                sent[rid] = recs
                yield pb.ProduceRequest(request_id=rid, topic=self.topic, partition=0, records=recs,
                                        acks=pb.ACKS_ALL)
                time.sleep(0.002)
        try:
            for r in stub.Produce(gen(), timeout=60):
                recs = sent.pop(r.request_id)
                if r.error_code == 0:
                    for k, rec in enumerate(recs):
                        self.acked[rec.value] = r.base_offset + k
                else:
                    self.failures += 1
        except grpc.RpcError:
            pass  # the leader died: everything unanswered is unknown, not acknowledged
        ch.close()


def segment_files(s, topic):
    d = os.path.join(s.data_dir, "topics", topic, "0")
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d)) if f.endswith(".log")}


def test_promote_after_leader_crash_loses_nothing_acknowledged():
    c = Cluster()
    try:
        for i in range(3):
            c.start(i)
        lead = c.nodes[0]
        wait_for("followers connected", lambda: lead.read_log().count("event=follower_connection") >= 2)
        lead.admin.CreateTopic(pb.CreateTopicRequest(
            name="f", partitions=1, config=pb.TopicConfig(min_insync_replicas=2, fsync_policy="always")), timeout=5)
        wait_for("topic on followers", lambda: all(
            any(t.name == "f" for t in n.admin.ListTopics(pb.ListTopicsRequest(), timeout=5).topics)
            for n in c.nodes[1:]))
        wait_for("ISR of 3", lambda: len(describe(lead, "f").partitions[0].in_sync_replicas) == 3)

        p = Producer(lead.addr, "f")
        p.start()
        wait_for("some acknowledged records", lambda: len(p.acked) >= 3000, timeout=30)
        lead.kill9()
        # Promote node 1 at once: it was in sync, and its in-sync lease
        # (--replica-lag-max-ms, 1 s here) has not run out, so no unclean
        # flag is needed (docs/REPLICATION.md, "The in-sync lease").
        n1, n2 = c.nodes[1], c.nodes[2]
        resp = n1.admin.Promote(pb.PromoteRequest(node_id=1), timeout=10)
        assert resp.leader_id == 1 and resp.leader_epoch == 2 and resp.was_in_sync, resp
        p.stop.set()
        p.join(30)
        assert not p.is_alive()
        acked = dict(p.acked)
        print("  %d records acknowledged before the crash, %d failed requests" % (len(acked), p.failures))
        # Promote refuses another node's id.
        try:
            n1.admin.Promote(pb.PromoteRequest(node_id=2), timeout=5)
            raise AssertionError("Promote of another node's id accepted")
        except grpc.RpcError as e:
            assert e.code() == SC.INVALID_ARGUMENT, e
        wait_for("node 2 follows node 1", lambda: n2.admin.GetClusterInfo(
            pb.GetClusterInfoRequest(), timeout=5).leader_epoch == 2)
        # Readers see what min_insync_replicas (2) nodes hold: the new leader's
        # tail becomes readable once node 2 has it too (docs/REPLICATION.md).
        wait_for("the new leader readable to its end", lambda: (lambda p: p.high_watermark == p.log_end_offset)(
            describe(n1, "f").partitions[0]), timeout=30)

        # Every acknowledged record is on the new leader, byte for byte, exactly once.
        got = read_all(n1, "f")
        assert [r.offset for r in got] == list(range(len(got))), "offsets not contiguous"
        by_value = {}
        for r in got:
            assert r.value not in by_value, "duplicate %r" % r.value
            by_value[r.value] = r.offset
        lost = [v for v in acked if v not in by_value]
        assert not lost, "%d acknowledged records lost, e.g. %r" % (len(lost), lost[:3])
        moved = [v for v, off in acked.items() if by_value[v] != off]
        assert not moved, "acknowledged records at other offsets: %r" % moved[:3]

        # The new leader takes ACKS_ALL writes once node 2 is in sync with it.
        wait_for("ISR {1,2}", lambda: len(describe(n1, "f").partitions[0].in_sync_replicas) == 2)
        r = sbtest.produce(n1, "f", [pb.Record(value=b"after-%d" % i) for i in range(200)], acks=pb.ACKS_ALL)
        assert all(x.error_code == 0 for x in r), [x.error_message for x in r if x.error_code][:3]

        # The old leader returns: it learns epoch 2, follows node 1, drops what only it had.
        n0 = c.start(0)
        wait_for("node 0 sees epoch 2", lambda: n0.admin.GetClusterInfo(
            pb.GetClusterInfoRequest(), timeout=5).leader_epoch == 2)
        try:
            sbtest.produce(n0, "f", [pb.Record(value=b"x")])
            raise AssertionError("the old leader took a write")
        except grpc.RpcError as e:
            assert e.code() == SC.UNAVAILABLE, e
            md = dict(e.trailing_metadata() or ())
            assert md.get("streambus-leader") == n1.addr, md
        end = describe(n1, "f").partitions[0].log_end_offset
        for n in (n0, n2):
            wait_for("node converged", lambda n=n: describe(n, "f").partitions[0].high_watermark == end)
        wait_for("ISR of 3 again", lambda: len(describe(n1, "f").partitions[0].in_sync_replicas) == 3)
        files = [segment_files(n, "f") for n in (n0, n1, n2)]
        assert files[0].keys() == files[1].keys() == files[2].keys(), [list(f) for f in files]
        for name in files[1]:
            assert files[0][name] == files[1][name] == files[2][name], "segment %s differs" % name
        assert [r.value for r in read_all(n0, "f")] == [r.value for r in read_all(n1, "f")]
        c.passed = True
    finally:
        c.stop_all()
        if getattr(c, "passed", False):  # kept with the logs when it fails
            sbtest.cleanup(c.base)


def test_a_returning_leader_cuts_the_suffix_only_it_wrote():
    c = Cluster(name="diverge")
    try:
        for i in range(3):
            c.start(i)
        lead, n1, n2 = c.nodes
        wait_for("followers connected", lambda: lead.read_log().count("event=follower_connection") >= 2)
        lead.admin.CreateTopic(pb.CreateTopicRequest(name="d", partitions=1), timeout=5)
        r = sbtest.produce(lead, "d", [pb.Record(value=b"a-%d" % i) for i in range(500)], acks=pb.ACKS_ALL)
        assert all(x.error_code == 0 for x in r)
        wait_for("replicated", lambda: describe(n2, "d").partitions[0].high_watermark == 500)
        # Followers frozen: the leader acknowledges (ACKS_LEADER) records only it has.
        for n in (n1, n2):
            n.proc.send_signal(19)  # SIGSTOP
        try:
            time.sleep(0.2)
            r = sbtest.produce(lead, "d", [pb.Record(value=b"only-on-0-%d" % i) for i in range(300)])
            assert all(x.error_code == 0 for x in r)
            lead.kill9()
        finally:
            for n in (n1, n2):
                n.proc.send_signal(18)  # SIGCONT
        resp = n1.admin.Promote(pb.PromoteRequest(node_id=1, unclean=True), timeout=10)
        assert resp.leader_id == 1, resp
        r = sbtest.produce(n1, "d", [pb.Record(value=b"b-%d" % i) for i in range(100)])
        assert all(x.error_code == 0 for x in r)
        n0 = c.start(0)
        end = describe(n1, "d").partitions[0].log_end_offset
        wait_for("node 0 converged", lambda: describe(n0, "d").partitions[0].high_watermark == end)
        assert "event=replica_truncated" in n0.read_log() or end >= 800, n0.read_log()[-3000:]
        values = [r.value for r in read_all(n0, "d")]
        assert values == [r.value for r in read_all(n1, "d")]
        # Whatever node 1 had of the suffix stays (it was replicated); the rest is gone everywhere.
        assert values[:500] == [b"a-%d" % i for i in range(500)]
        assert values[-100:] == [b"b-%d" % i for i in range(100)]
        assert segment_files(n0, "d") == segment_files(n1, "d")
        c.passed = True
    finally:
        c.stop_all()
        if getattr(c, "passed", False):  # kept with the logs when it fails
            sbtest.cleanup(c.base)


def test_catch_up_ships_sealed_segments_and_resumes_a_cut_copy():
    """A follower that was away gets the leader's sealed segments as files;
    killed in the middle of one, it resumes that file where it stopped."""
    c = Cluster(name="catchup", extra=["--fsync-policy", "never"])
    try:
        lead = c.start(0)
        lead.admin.CreateTopic(pb.CreateTopicRequest(
            name="big", partitions=1, config=pb.TopicConfig(segment_bytes=16 << 20)), timeout=5)
        value = os.urandom(4000)
        for base in range(0, 20000, 2000):  # ~80 MB: 4 sealed segments and a tail
            recs = [pb.Record(key=b"%d" % (base + i), value=value) for i in range(2000)]
            r = sbtest.produce(lead, "big", recs, per_request=200)
            assert all(x.error_code == 0 for x in r)
        n1 = c.start(1)
        staged = os.path.join(n1.data_dir, "topics", "big", "0", "replica")
        cut = False
        deadline = time.time() + 60
        while time.time() < deadline and not cut:
            for f in os.listdir(staged) if os.path.isdir(staged) else ():
                if f.endswith(".log") and 0 < os.path.getsize(os.path.join(staged, f)) < (16 << 20) - (1 << 20):
                    n1.kill9()
                    cut = True
                    break
            time.sleep(0.005)
        assert cut, "never saw a partly staged segment"
        n1 = c.start(1)
        end = describe(lead, "big").partitions[0].log_end_offset
        wait_for("follower caught up", lambda: describe(n1, "big").partitions[0].high_watermark == end, timeout=120)
        assert "event=segment_ship_resumed" in lead.read_log(), "the cut copy was not resumed"
        assert n1.read_log().count("event=segment_installed") >= 1
        a, b = segment_files(lead, "big"), segment_files(n1, "big")
        assert a.keys() == b.keys(), (list(a), list(b))
        for name in a:
            assert a[name] == b[name], "segment %s differs" % name
        c.passed = True
    finally:
        c.stop_all()
        if getattr(c, "passed", False):  # kept with the logs when it fails
            sbtest.cleanup(c.base)


def test_a_draining_leader_hands_over_and_loses_nothing():
    """SIGTERM on the leader under ACKS_ALL load: it answers what it accepted,
    hands leadership to an in-sync follower, and exits 0; every acknowledged
    record is on the new leader, and writes go on there."""
    c = Cluster(name="handover")
    try:
        for i in range(3):
            c.start(i)
        lead = c.nodes[0]
        wait_for("followers connected", lambda: lead.read_log().count("event=follower_connection") >= 2)
        lead.admin.CreateTopic(pb.CreateTopicRequest(
            name="h", partitions=1, config=pb.TopicConfig(min_insync_replicas=2)), timeout=5)
        wait_for("ISR of 3", lambda: len(describe(lead, "h").partitions[0].in_sync_replicas) == 3)
        p = Producer(lead.addr, "h")
        p.start()
        wait_for("some acknowledged records", lambda: len(p.acked) >= 2000, timeout=30)
        rc = lead.stop()  # SIGTERM: drain, hand over, exit
        p.stop.set()
        p.join(30)
        assert rc == 0, lead.read_log()[-3000:]
        assert "event=handover " in lead.read_log(), lead.read_log()[-3000:]
        infos = [n.admin.GetClusterInfo(pb.GetClusterInfoRequest(), timeout=5) for n in c.nodes[1:]]
        leaders = {i.leader_epoch: [x.id for x in i.nodes if x.role == "leader"] for i in infos}
        assert list(leaders) == [2] and len(leaders[2]) == 1 and leaders[2][0] in (1, 2), leaders
        new = c.nodes[leaders[2][0]]
        got = {r.value: r.offset for r in read_all(new, "h")}
        lost = [v for v in p.acked if v not in got]
        assert not lost, "%d acknowledged records lost" % len(lost)
        assert all(got[v] == off for v, off in p.acked.items())
        other = c.nodes[3 - leaders[2][0]]
        wait_for("ISR {1,2}", lambda: len(describe(new, "h").partitions[0].in_sync_replicas) == 2)
        r = sbtest.produce(new, "h", [pb.Record(value=b"after")], acks=pb.ACKS_ALL)
        assert r[0].error_code == 0, r[0].error_message
        end = describe(new, "h").partitions[0].log_end_offset
        wait_for("the other follower converged", lambda: describe(other, "h").partitions[0].high_watermark == end)
        c.passed = True
    finally:
        c.stop_all()
        if getattr(c, "passed", False):
            sbtest.cleanup(c.base)


def test_a_follower_refetches_a_corrupted_sealed_segment():
    """Bit rot in a follower's sealed segment: at start-up it reads every
    sealed segment, finds the bad one, cuts back to it and fetches it again."""
    c = Cluster(name="bitrot")
    try:
        for i in range(2):
            c.start(i)
        lead, n1 = c.nodes[0], c.nodes[1]
        wait_for("follower connected", lambda: "event=follower_connection" in lead.read_log())
        lead.admin.CreateTopic(pb.CreateTopicRequest(
            name="rot", partitions=1, config=pb.TopicConfig(segment_bytes=1 << 20)), timeout=5)
        value = os.urandom(2000)
        for base in range(0, 2500, 500):  # ~5 MB: 4 sealed segments of 1 MiB
            r = sbtest.produce(lead, "rot", [pb.Record(value=value) for _ in range(500)], acks=pb.ACKS_ALL)
            assert all(x.error_code == 0 for x in r), [x.error_message for x in r if x.error_code][:2]
        end = describe(lead, "rot").partitions[0].log_end_offset
        wait_for("replicated", lambda: describe(n1, "rot").partitions[0].high_watermark == end)
        assert n1.stop() == 0
        names = sorted(segment_files(n1, "rot"))
        victim = os.path.join(n1.data_dir, "topics", "rot", "0", names[1])  # a sealed one in the middle
        with open(victim, "r+b") as f:
            f.seek(os.path.getsize(victim) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x5A]))
        n1 = c.start(1)
        wait_for("converged again", lambda: describe(n1, "rot").partitions[0].high_watermark == end, timeout=60)
        log = n1.read_log()
        assert "event=replica_segment_refetch" in log, log[-3000:]
        a, b = segment_files(lead, "rot"), segment_files(n1, "rot")
        assert a.keys() == b.keys(), (list(a), list(b))
        for name in a:
            assert a[name] == b[name], "segment %s differs" % name
        c.passed = True
    finally:
        c.stop_all()
        if getattr(c, "passed", False):
            sbtest.cleanup(c.base)


if __name__ == "__main__":
    sbtest.run_tests([
        test_promote_after_leader_crash_loses_nothing_acknowledged,
        test_a_returning_leader_cuts_the_suffix_only_it_wrote,
        test_catch_up_ships_sealed_segments_and_resumes_a_cut_copy,
        test_a_draining_leader_hands_over_and_loses_nothing,
        test_a_follower_refetches_a_corrupted_sealed_segment,
    ])
