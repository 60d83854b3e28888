"""A 3-node streambusd cluster inside a net_lab.Lab: node i runs in namespace n<i> and listens
on 10.77.0.<i+1>:7070 (--insecure: the address exists only in namespaces the test made).
Import this only after Lab.enter_client() (it imports grpc through sbtest).

Also: waits on the in-sync set, convergence, segment comparison, and extra history checks
that history.check() does not make (net_extra_checks)."""
import os
import re
import subprocess
import time

import grpc

import sbtest
from sbtest import pb, rpc, health_pb2_grpc
import history as hist
import net_lab

PORT = 7070
SC = grpc.StatusCode


class NetServer(sbtest.Server):
    """sbtest.Server run through `ip netns exec NS`; the Popen's pid is streambusd's own."""

    def __init__(self, lab, i, data_dir, args):
        super().__init__(data_dir=data_dir, args=args, listen="%s:%d" % (lab.ips[i], PORT))
        self.lab, self.i = lab, i

    def spawn(self):
        os.makedirs(os.path.dirname(self.data_dir), exist_ok=True)
        self.log = open(self.log_path, "w")
        cmd = self.lab.exec_prefix(self.i) + [sbtest.STREAMBUSD, "--listen", self.listen,
                                               "--data-dir", self.data_dir] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not net_lab.wait_exec(self.proc.pid, sbtest.STREAMBUSD):
            raise RuntimeError("pid %d is not %s after ip netns exec (exit %s):\n%s"
                               % (self.proc.pid, sbtest.STREAMBUSD, self.proc.poll(), self.read_log()))
        return self

    def wait_serving(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r"event=serving .*?port=(\d+)", self.read_log())
            if m:
                self.port = int(m.group(1))
                self.addr = self.listen
                self.channel = grpc.insecure_channel(self.addr)
                self.sb = rpc.StreamBusStub(self.channel)
                self.admin = rpc.AdminStub(self.channel)
                self.health = health_pb2_grpc.HealthStub(self.channel)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("streambusd exited %s:\n%s" % (self.proc.returncode, self.read_log()))
            time.sleep(0.02)
        raise RuntimeError("streambusd did not start:\n" + self.read_log())


class NetCluster:
    def __init__(self, lab, name, lag_ms, extra=()):
        self.lab = lab
        self.base = sbtest.scratch_dir(name)
        self.addrs = ["%s:%d" % (ip, PORT) for ip in lab.ips]
        self.peers = ",".join("%d=%s" % (i, a) for i, a in enumerate(self.addrs))
        self.args = ["--peers", self.peers, "--replica-lag-max-ms", str(lag_ms), "--insecure",
                     "--segment-bytes", "262144"] + list(extra)
        self.nodes = [None] * lab.n
        self.spawned = []  # every process ever started (all logs are checked)
        self.bad_exits = []
        self.clients = []  # workload threads, halted whatever happens
        self.leader = 0  # stopped last (followers first: no handover to wait for)

    def data_dir(self, i):
        return os.path.join(self.base, "n%d" % i, "data")

    def spawn(self, i):
        s = NetServer(self.lab, i, self.data_dir(i), ["--node-id", str(i)] + self.args)
        self.spawned.append(s)
        self.nodes[i] = s.spawn()
        return s

    def start(self, *which, timeout=60):
        which = which or tuple(range(self.lab.n))
        for i in which:
            self.spawn(i)
        for i in which:
            self.nodes[i].wait_serving(timeout)
        return [self.nodes[i] for i in which]

    def kill9(self, i):
        self.nodes[i].kill9()

    def close(self):
        order = [i for i in range(len(self.nodes)) if i != self.leader] + [self.leader]
        for i in order:
            s = self.nodes[i]
            if s and s.proc and s.proc.poll() is None:
                try:
                    rc = s.stop()
                    if rc != 0:
                        self.bad_exits.append((i, rc))
                except RuntimeError as e:
                    self.bad_exits.append((i, str(e)))

    def check_logs(self):
        for s in self.spawned:
            s.check_log()

    def log_tails(self, n=2500):
        out = []
        for s in self.spawned:
            try:
                out.append("---- node %d %s:\n%s" % (s.i, s.log_path, s.read_log()[-n:]))
            except OSError:
                pass
        return "\n".join(out)

    def log_count(self, i, needle):
        return sum(s.read_log().count(needle) for s in self.spawned if s.i == i)


# ---------------------------------------------------------------- queries and waits

def wait_for(what, fn, timeout=30, interval=0.05):
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except grpc.RpcError as e:
            last = "%s: %s" % (e.code(), e.details())
        if time.time() > deadline:
            raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


def describe(s, topic):
    return s.admin.DescribeTopic(pb.DescribeTopicRequest(name=topic), timeout=5)


def isr_sets(s, topic):
    """[set of in-sync node ids] per partition, as node s reports it."""
    return [set(p.in_sync_replicas) for p in describe(s, topic).partitions]


def cluster_info(s):
    return s.admin.GetClusterInfo(pb.GetClusterInfoRequest(), timeout=5)


def wait_isr(s, topic, pred, what, timeout=30):
    """Polls node s's in-sync sets until pred(list of sets) holds; returns seconds waited."""
    t0 = time.time()
    wait_for(what, lambda: pred(isr_sets(s, topic)), timeout=timeout, interval=0.02)
    return time.time() - t0


def wait_followers_connected(c, leader=0, timeout=30):
    for i in range(c.lab.n):
        if i == leader:
            continue
        pat = re.compile(r"event=follower_connection (?:node=%d )?node=%d up=1" % (leader, i))
        wait_for("node %d connected to node %d" % (i, leader),
                 lambda pat=pat: pat.search(c.nodes[leader].read_log()), timeout)


def wait_converged(c, topic, leader, nodes, timeout=60):
    """Every node in nodes has the leader's log end as its high watermark, on every partition."""
    def done():
        ld = describe(c.nodes[leader], topic).partitions
        ends = [p.log_end_offset for p in ld]
        if any(p.high_watermark != p.log_end_offset for p in ld):
            return False
        for i in nodes:
            d = describe(c.nodes[i], topic).partitions
            if [p.high_watermark for p in d] != ends or [p.log_end_offset for p in d] != ends:
                return False
        return ends
    return wait_for("nodes %s converged on node %d" % (list(nodes), leader), done, timeout)


def segment_files(c, i, topic, partition):
    d = os.path.join(c.data_dir(i), "topics", topic, str(partition))
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".log"):
            with open(os.path.join(d, f), "rb") as fh:
                out[f] = fh.read()
    return out


def compare_segments(c, topic, partitions, nodes):
    """Asserts every partition's segment files are byte-identical on every node; returns
    the number of segment files compared per partition."""
    counts = []
    for p in range(partitions):
        files = [segment_files(c, i, topic, p) for i in nodes]
        names = [sorted(f) for f in files]
        assert all(n == names[0] for n in names), "partition %d: segment names differ: %s" % (p, names)
        for name in names[0]:
            blobs = [f[name] for f in files]
            bad = [nodes[k] for k, b in enumerate(blobs) if b != blobs[0]]
            assert not bad, "partition %d segment %s differs on nodes %s (sizes %s)" % (
                p, name, bad, [len(b) for b in blobs])
        counts.append(len(names[0]))
    return counts


# ---------------------------------------------------------------- history helpers

NOTHING_WRITTEN = "not enough in-sync replicas"  # service/sb_svc_produce.c: refused before the append


def ops(h):
    """{op id: {"invoke": ev, "end": ev or None}} of a History."""
    out = {}
    for ev in h.events:
        if ev["phase"] == "invoke":
            out[ev["id"]] = {"invoke": ev, "end": None}
        elif ev["id"] in out:
            out[ev["id"]]["end"] = ev
    return out


def produce_outcomes(h, since_ns=None, until_ns=None):
    """Counts of produce completions, by (phase, code), for ops invoked in [since, until)."""
    counts = {}
    for o in ops(h).values():
        inv, end = o["invoke"], o["end"]
        if inv["type"] != "produce":
            continue
        if since_ns is not None and inv["time"] < since_ns:
            continue
        if until_ns is not None and inv["time"] >= until_ns:
            continue
        key = "open" if end is None else "%s/%s" % (end["phase"], end.get("code"))
        counts[key] = counts.get(key, 0) + 1
    return counts


def net_extra_checks(h, final):
    """Checks history.check() cannot make from codes alone: a produce refused with
    'not enough in-sync replicas ... nothing was written' (UNAVAILABLE, so the checker counts
    it unknown) must never be visible anywhere. Returns a list of problems."""
    refused = set()
    for o in ops(h).values():
        inv, end = o["invoke"], o["end"]
        if inv["type"] == "produce" and end is not None and end["phase"] != "ok" \
                and (end.get("msg") or "").startswith(NOTHING_WRITTEN):
            refused.update(pid for pid, _ in inv["payloads"])
    seen = {}
    for (topic, part), recs in final.items():
        for off, value in recs:
            pid = hist.parse_pid(value)
            if pid in refused:
                seen.setdefault(pid, []).append("final %s/%d@%d" % (topic, part, off))
    for ev in h.events:
        if ev["phase"] == "ok" and "records" in ev:
            for off, pid, _ in ev["records"]:
                if pid in refused:
                    seen.setdefault(pid, []).append("read op %d @%d" % (ev["id"], off))
    return ["payload %s was refused with '%s ... nothing was written' but is visible at %s"
            % (pid, NOTHING_WRITTEN, locs[:3]) for pid, locs in sorted(seen.items())], len(refused)
