"""Shared machinery of the disk-fault scenarios (test_disk_faults.py, test_mutants.py):
a streambusd whose data dir lives on a faultfs mount (../faultfs), with a fixed port
across restarts, an optional STREAMBUS_MUTANT, and the power-cut step.

Power cut = `powerloss` on the faultfs (every write not fsynced and every directory
entry not made durable by a directory fsync is undone, and the file system is dead:
every operation fails with EIO, so the process cannot write after the cut), then
kill -9 of the server, then `revive`. That order models a real power cut: nothing the
server does after the cut reaches the disk.
"""
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "integration"), os.path.join(HERE, "..", "faultfs")]
import grpc  # noqa: E402
import sbtest  # noqa: E402
from sbtest import pb, rpc  # noqa: E402
import health_pb2  # noqa: E402
from faultfsctl import FaultFS  # noqa: E402
import history as hist  # noqa: E402

FAULTFS = os.environ.get("FAULTFS", "")
SC = grpc.StatusCode
RESOURCE_EXHAUSTED = SC.RESOURCE_EXHAUSTED.value[0]
UNAVAILABLE = SC.UNAVAILABLE.value[0]
DEADLINE_EXCEEDED = SC.DEADLINE_EXCEEDED.value[0]


def skip_reason():
    """Why the faultfs scenarios cannot run here, or None."""
    if not os.environ.get("STREAMBUSD") and not shutil.which(sbtest.STREAMBUSD):
        return "STREAMBUSD not set"
    if not FAULTFS or not os.access(FAULTFS, os.X_OK):
        return "faultfs binary not available (env FAULTFS=%r; build needs libfuse3-dev)" % FAULTFS
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse missing"
    if os.geteuid() != 0:
        return "not root (faultfs mounts need root)"
    if not shutil.which("fusermount3"):
        return "fusermount3 missing (Debian package fuse3)"
    return None


def skip_if_unavailable():
    why = skip_reason()
    if why:
        print("skipped: " + why, flush=True)
        sys.exit(sbtest.SKIP)


def server_has_mutants():
    """True if the streambusd binary logs the mutant it was started with (built -DSB_MUTANTS=ON)."""
    path = sbtest.STREAMBUSD if os.path.sep in sbtest.STREAMBUSD else shutil.which(sbtest.STREAMBUSD)
    with open(path, "rb") as f:
        return b"follower_early_ack" in f.read()  # the mutant names exist only in such builds


def wait_for(what, fn, timeout=30, interval=0.01):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except grpc.RpcError:
            pass
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


class EnvServer(sbtest.Server):
    """sbtest.Server with extra environment variables for the process (STREAMBUS_MUTANT)."""

    def __init__(self, env=None, **kw):
        super().__init__(**kw)
        self.env = dict(os.environ, **(env or {}))
        if env is None or "STREAMBUS_MUTANT" not in env:
            self.env.pop("STREAMBUS_MUTANT", None)

    def spawn(self):
        os.makedirs(os.path.dirname(self.data_dir), exist_ok=True)
        self.log = open(self.log_path, "w")
        cmd = [sbtest.STREAMBUSD, "--listen", self.listen, "--data-dir", self.data_dir] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env)
        return self


class DiskNode:
    """One streambusd whose data dir is <mnt>/data on a faultfs mount; one fixed port across
    restarts; every process's log is kept beside the mount (not on it)."""

    def __init__(self, name, args, mutant=None, base=None, port=None, log_dir=None):
        self.base = base or sbtest.scratch_dir(name)
        self.fs = FaultFS(FAULTFS, os.path.join(self.base, "backing"), os.path.join(self.base, "mnt"))
        self.data = os.path.join(self.base, "mnt", "data")
        self.logs = log_dir or os.path.join(self.base, "logs")
        self.listen = "127.0.0.1:%d" % (port or sbtest.free_port())
        self.args = ["--io", "sync"] + list(args)
        self.mutant = mutant
        self.servers = []

    def mount(self):
        self.fs.start()
        # The operator provides the data dir: create it durably (mkdir + fsync of its parent).
        os.makedirs(self.data, exist_ok=True)
        fd = os.open(os.path.dirname(self.data), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.makedirs(self.logs, exist_ok=True)
        return self

    def start(self, mutant="default", timeout=30):
        mutant = self.mutant if mutant == "default" else mutant
        env = {"STREAMBUS_MUTANT": mutant} if mutant else {}
        for attempt in range(50):  # the old process's port can take a moment to come free
            s = EnvServer(env=env, data_dir=self.data, args=self.args, listen=self.listen)
            s.log_path = os.path.join(self.logs, "streambusd-%d.log" % time.time_ns())
            try:
                s.start(timeout=timeout)
                break
            except RuntimeError as e:
                if s.proc.poll() is None:
                    s.kill9()
                if "address" not in str(e).lower() or attempt == 49:
                    raise
                time.sleep(0.1)
        self.servers.append(s)
        return s

    @property
    def current(self):
        return self.servers[-1]

    @property
    def addr(self):
        return self.listen

    def alive(self):
        return bool(self.servers) and self.current.proc.poll() is None

    def kill9(self):
        self.current.kill9()
        self.current.check_log()

    def power_cut(self, want_unsynced=True, widen_ms=2, kill_also=()):
        """powerloss (the disk forgets everything not durable and dies), kill -9 (first the
        servers in kill_also, e.g. a cluster's other nodes, then this one), revive.
        want_unsynced: first wait (up to 2 s) until faultfs holds some not-yet-durable change,
        so the cut has something to undo (it still may not: the state moves on meanwhile);
        widen_ms: meanwhile every file operation is delayed that long (faultfs delay_ms),
        which widens the window between a write and the fsync that makes it durable."""
        if want_unsynced:
            if widen_ms:
                self.fs.delay_ms(widen_ms)
            deadline = time.time() + 2
            while time.time() < deadline:
                st = self.fs.status()
                if st["undo_files"] or st["undo_ns_ops"]:
                    break
        reply = self.fs.powerloss()
        for s in kill_also:
            if s.proc and s.proc.poll() is None:
                s.kill9()
        if self.servers and self.current.proc.poll() is None:
            self.kill9()
        self.fs.revive()
        self.fs.delay_ms(0)
        return reply

    def stop(self):
        if self.servers and self.current.proc.poll() is None:
            rc = self.current.stop()
            self.current.check_log()
            return rc
        return None

    def grep_logs(self, needle):
        n = 0
        for s in self.servers:
            try:
                n += s.read_log().count(needle)
            except OSError:
                pass
        return n

    def _unmount(self):
        """Unmounts and waits for faultfs to exit; SIGTERMs it (by pid) if it lingers after the
        unmount (seen now and then: FaultFS.stop() would wait 10 s and then SIGKILL it)."""
        proc = self.fs.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            self.fs.reset()
        except Exception:  # noqa: BLE001
            pass
        t = time.time()
        subprocess.run(["fusermount3", "-u", self.fs.mountpoint], stderr=subprocess.DEVNULL, timeout=30)
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                pass
            print("  faultfs lingered after the unmount: SIGTERM, exit %s after %.1fs"
                  % (proc.poll(), time.time() - t), flush=True)

    def teardown(self, keep):
        try:
            if self.servers and self.current.proc.poll() is None:
                self.current.kill9()
        finally:
            try:
                self.fs.thaw()
            except Exception:  # noqa: BLE001
                pass
            self._unmount()
            self.fs.stop()
        if keep:
            print("  kept for inspection: %s" % self.base, flush=True)
        else:
            sbtest.cleanup(self.base)


def create_topic(addr, name, partitions, **config):
    ch = grpc.insecure_channel(addr)
    try:
        rpc.AdminStub(ch).CreateTopic(pb.CreateTopicRequest(
            name=name, partitions=partitions, config=pb.TopicConfig(**config)), timeout=20)
    finally:
        ch.close()


def health(addr, service="", timeout=2.0):
    """The health status name, or the gRPC error code name."""
    ch = grpc.insecure_channel(addr)
    try:
        import health_pb2_grpc
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
    except grpc.RpcError as e:
        return e.code().name
    finally:
        ch.close()


def produce_events(h, since_time=0, invoked_after=0):
    """[(op id, outcome phase, code, invoke time, end time)] of produce ops of history h invoked
    at or after invoked_after (time.monotonic_ns()), completed at or after since_time."""
    inv = {}
    out = []
    for ev in list(h.events):
        if ev.get("type") == "produce" and ev["phase"] == "invoke":
            inv[ev["id"]] = ev["time"]
        elif ev["phase"] != "invoke" and ev["id"] in inv:
            if inv[ev["id"]] >= invoked_after and ev["time"] >= since_time:
                out.append((ev["id"], ev["phase"], ev.get("code"), inv[ev["id"]], ev["time"]))
    return out


class DeadlineProducer(threading.Thread):
    """One Produce call per request (one request per stream) with a client deadline, so a hung
    disk shows up as DEADLINE_EXCEEDED per request; records into a History like Producer."""

    def __init__(self, addr, history, topic, partitions, client, deadline_s=2.0, records_per_request=10,
                 value_size=100, acks=pb.ACKS_LEADER):
        super().__init__(daemon=True, name="deadline-producer%d" % client)
        self.addr, self.h, self.topic, self.client = addr, history, topic, client
        self.partitions = list(range(partitions)) if isinstance(partitions, int) else list(partitions)
        self.process = "producer%d" % client
        self.deadline_s, self.rpr, self.value_size, self.acks = deadline_s, records_per_request, value_size, acks
        self.halt = threading.Event()
        self.seq = self.requests = 0
        self.stats = {"ok": 0, "fail": 0, "unknown": 0}
        self.codes = {}

    def acked(self):
        return self.stats["ok"]

    def stop(self, timeout=30):
        self.halt.set()
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError("deadline producer did not stop")

    def run(self):
        ch = grpc.insecure_channel(self.addr)
        stub = rpc.StreamBusStub(ch)
        try:
            while not self.halt.is_set():
                self.requests += 1
                part = self.partitions[self.requests % len(self.partitions)]
                payloads, records = [], []
                for _ in range(self.rpr):
                    self.seq += 1
                    pid = "p%d-%d" % (self.client, self.seq)
                    payloads.append([pid, self.value_size])
                    records.append(pb.Record(value=hist.make_value(pid, self.value_size)))
                op = self.h.invoke(self.process, "produce", topic=self.topic, partition=part, payloads=payloads,
                                   acks=int(self.acks))
                req = pb.ProduceRequest(request_id=op, topic=self.topic, partition=part, records=records,
                                        acks=self.acks)
                try:
                    resp = list(stub.Produce(iter([req]), timeout=self.deadline_s))
                except grpc.RpcError as e:
                    self.h.unknown(op, e.code(), "no response: " + (e.details() or ""))
                    self.stats["unknown"] += 1
                    self.codes[e.code().name] = self.codes.get(e.code().name, 0) + 1
                    if e.code() == SC.UNAVAILABLE:
                        time.sleep(0.05)
                    continue
                if not resp:
                    self.h.unknown(op, None, "stream ended without answering")
                    self.stats["unknown"] += 1
                    continue
                r = resp[0]
                if r.error_code == 0:
                    self.h.ok(op, offset=r.base_offset)
                    self.stats["ok"] += 1
                    self.codes["OK"] = self.codes.get("OK", 0) + 1
                else:
                    self.h.error(op, r.error_code, r.error_message)
                    kind = "fail" if r.error_code in hist.DEFINITE_FAILURES else "unknown"
                    self.stats[kind] += 1
                    name = SC.__members__.get(next((n for n, c in SC.__members__.items()
                                                    if c.value[0] == r.error_code), "UNKNOWN")).name
                    self.codes[name] = self.codes.get(name, 0) + 1
        finally:
            ch.close()
