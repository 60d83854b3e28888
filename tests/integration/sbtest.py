"""Harness for integration tests: runs the real streambusd on 127.0.0.1 with
a free port (it binds port 0 and logs the port it got), talks to it with
Debian's grpcio, and stops it by pid.

Environment (set by CTest): STREAMBUSD (server binary), STREAMBUS_CLI (CLI
binary), SB_PY (generated Python stubs), SB_TEST_TMP (scratch space).
"""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SB_PY = os.environ.get("SB_PY")
if SB_PY:
    sys.path.insert(0, SB_PY)

import grpc  # noqa: E402
from streambus.v1 import streambus_pb2 as pb  # noqa: E402,F401
from streambus.v1 import streambus_pb2_grpc as rpc  # noqa: E402
import health_pb2  # noqa: E402,F401
import health_pb2_grpc  # noqa: E402

STREAMBUSD = os.environ.get("STREAMBUSD", "streambusd")
CLI = os.environ.get("STREAMBUS_CLI", "streambus")
SKIP = 77
# Marks of a sanitizer report in a server's output (ASan, LSan, UBSan).
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def free_port():
    """A port on 127.0.0.1 that was free a moment ago (bound to port 0, closed):
    for servers whose address others must know before they start (cluster peers)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def scratch_dir(name):
    base = os.environ.get("SB_TEST_TMP") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=name + "-", dir=base)


class Server:
    """One streambusd process. Use as a context manager."""

    def __init__(self, data_dir=None, args=(), name="it", listen="127.0.0.1:0"):
        """listen: the --listen address; with port 0 (the default) the server
        picks a free port and start() learns it from the log."""
        self.data_dir = data_dir or os.path.join(scratch_dir(name), "data")
        self.args = list(args)
        self.listen = listen
        self.proc = None
        self.port = None
        self.log_path = os.path.join(os.path.dirname(self.data_dir), "streambusd-%d.log" % time.time_ns())

    def spawn(self):
        """Starts the process without waiting for it to serve (see wait_serving):
        several servers can then come up at the same time."""
        os.makedirs(os.path.dirname(self.data_dir), exist_ok=True)  # the log goes beside data_dir
        self.log = open(self.log_path, "w")
        cmd = [STREAMBUSD, "--listen", self.listen, "--data-dir", self.data_dir] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def start(self, timeout=20):
        self.spawn()
        return self.wait_serving(timeout)

    def wait_serving(self, timeout=20):
        """Waits for the spawned server's event=serving line; connects the stubs."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log_path) as f:
                m = re.search(r"event=serving .*?port=(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                self.addr = "127.0.0.1:%d" % self.port
                self.channel = grpc.insecure_channel(self.addr)
                self.sb = rpc.StreamBusStub(self.channel)
                self.admin = rpc.AdminStub(self.channel)
                self.health = health_pb2_grpc.HealthStub(self.channel)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("streambusd exited %s:\n%s" % (self.proc.returncode, self.read_log()))
            time.sleep(0.02)
        raise RuntimeError("streambusd did not start:\n" + self.read_log())

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the server by pid; returns its exit status (None if killed)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        try:
            self.channel.close()
        except Exception:
            pass
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("streambusd did not exit within %ss of %s" % (timeout, sig))

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        rc = self.stop()
        if exc[0] is None and rc not in (0, None):
            raise RuntimeError("streambusd exited %s:\n%s" % (rc, self.read_log()[-4000:]))
        self.check_log()

    def check_log(self):
        """Raises if the server's log holds a sanitizer report."""
        text = self.read_log()
        if any(m in text for m in SANITIZER_MARKS):
            raise RuntimeError("sanitizer report in server log %s:\n%s" % (self.log_path, text[-6000:]))


def produce(server, topic, records, partition=0, acks=pb.ACKS_LEADER, per_request=100):
    """Produces records (list of pb.Record) in requests of per_request; returns responses."""
    def gen():
        for i in range(0, len(records), per_request):
            yield pb.ProduceRequest(request_id=i // per_request, topic=topic, partition=partition,
                                    records=records[i:i + per_request], acks=acks)
    return list(server.sb.Produce(gen()))


@contextlib.contextmanager
def server(name, args=(), data_dir=None):
    """A started streambusd (stopped, and its log checked, on exit). Its scratch directory is
    removed if the block succeeded and data_dir was not given (kept, with the log, on failure)."""
    s = Server(name=name, args=list(args), data_dir=data_dir)
    with s:
        yield s
    if data_dir is None:
        cleanup(os.path.dirname(s.data_dir))


def create_topic(s, name, partitions=1):
    s.admin.CreateTopic(pb.CreateTopicRequest(name=name, partitions=partitions))


def expect_code(code, fn, *args, contains=None, **kw):
    """Calls fn, which must fail with status code (and details containing `contains`);
    returns the RpcError."""
    try:
        fn(*args, **kw)
    except grpc.RpcError as e:
        assert e.code() == code, "expected %s, got %s: %s" % (code, e.code(), e.details())
        if contains:
            assert contains in (e.details() or ""), "%r not in %r" % (contains, e.details())
        return e
    raise AssertionError("expected %s, but the call succeeded" % code)


def run_tests(tests):
    """Runs test functions; prints a closing 'N passed, N failed' line; exits non-zero on failure."""
    passed = failed = 0
    for t in tests:
        t0 = time.time()
        try:
            t()
            passed += 1
            print("PASS %s (%.2fs)" % (t.__name__, time.time() - t0), flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)
