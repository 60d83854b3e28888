"""Integration test of examples/python: gen_stubs.sh generates working stubs;
producer.py pipelines stdin lines and prints offsets (and reports refusals);
subscriber.py follows a partition across a server restart, resuming from
streambus-next-offset with nothing missed or repeated.

Run by CTest (it_test_examples) with STREAMBUSD, SB_PY and SB_TEST_TMP set.
"""
import atexit
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import sbtest
from sbtest import Server, pb, run_tests, scratch_dir

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "python"))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
STUBS = {}


def stubs_dir():
    """Stubs made by examples/python/gen_stubs.sh (the build's SB_PY if the
    generator tools are missing)."""
    if "dir" not in STUBS:
        out = os.path.join(scratch_dir("ex-stubs"), "gen")
        if shutil.which("protoc") and shutil.which("grpc_python_plugin"):
            r = subprocess.run(["sh", os.path.join(EXAMPLES, "gen_stubs.sh"), out], capture_output=True,
                               text=True, timeout=120)
            assert r.returncode == 0, "gen_stubs.sh failed:\n%s%s" % (r.stdout, r.stderr)
            for f in ("streambus/v1/streambus_pb2.py", "streambus/v1/streambus_pb2_grpc.py",
                      "streambus/__init__.py", "streambus/v1/__init__.py", "health_pb2.py", "health_pb2_grpc.py"):
                assert os.path.exists(os.path.join(out, f)), "gen_stubs.sh did not write %s" % f
            assert not os.path.exists(os.path.join(out, "grpc")), "a generated grpc/ package would shadow grpcio"
            STUBS["dir"] = out
            atexit.register(sbtest.cleanup, os.path.dirname(out))
        else:
            print("  (protoc/grpc_python_plugin missing: using the build's stubs)")
            STUBS["dir"] = sbtest.SB_PY
    return STUBS["dir"]


def env():
    e = dict(os.environ)
    e["STREAMBUS_STUBS"] = stubs_dir()
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    return e


def run_example(name, args, stdin=b"", timeout=60):
    return subprocess.run([PY, os.path.join(EXAMPLES, name)] + args, input=stdin, capture_output=True,
                          env=env(), timeout=timeout)


def test_gen_stubs_and_imports():
    """The generated stubs import next to the real grpc package (no shadowing)."""
    code = ("import grpc, health_pb2, health_pb2_grpc; from streambus.v1 import streambus_pb2, streambus_pb2_grpc;"
            "assert hasattr(grpc, 'insecure_channel'); assert streambus_pb2_grpc.StreamBusStub;"
            "assert health_pb2.DESCRIPTOR.package == 'grpc.health.v1'")
    r = subprocess.run([PY, "-c", "import sys; sys.path.insert(0, %r); %s" % (stubs_dir(), code)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in ("producer.py", "subscriber.py"):
        r = run_example(name, ["--help"])
        assert r.returncode == 0 and b"--server" in r.stdout and b"--topic" in r.stdout, r.stderr


def test_producer():
    """Offsets printed per line; batches, windows, keys, acks=none and refusals."""
    s = Server(name="ex-prod")
    with s:
        lines = b"".join(b"line %d\n" % i for i in range(100))
        r = run_example("producer.py", ["--server", s.addr, "--topic", "demo", "--create", "3", "--partition", "0",
                                        "--batch", "7", "--window", "4"], lines)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().splitlines() == ["0 %d" % i for i in range(100)], r.stdout[:300]
        assert b"100 records acknowledged, 0 refused" in r.stderr, r.stderr
        got = [x.value for resp in s.sb.Consume(pb.ConsumeRequest(topic="demo", stop=pb.STOP_AT_END))
               for x in resp.records]
        assert got == [b"line %d" % i for i in range(100)]

        # keys: the same key always lands on the same partition
        keyed = b"".join(b"user%d\tevent %d\n" % (i % 5, i) for i in range(40))
        r = run_example("producer.py", ["--server", s.addr, "--topic", "demo", "--partition", "-1",
                                        "--key-separator", "\t", "--acks", "all"], keyed)
        assert r.returncode == 0, r.stderr
        parts = [int(x.split()[0]) for x in r.stdout.decode().splitlines()]
        assert len(parts) == 40
        for i in range(40):
            assert parts[i] == parts[i % 5], "user%d moved partitions" % (i % 5)
        recs = [x for p in range(3) for resp in s.sb.Consume(pb.ConsumeRequest(topic="demo", partition=p,
                                                                                  stop=pb.STOP_AT_END))
                for x in resp.records if x.key]
        assert sorted(x.value for x in recs) == sorted(b"event %d" % i for i in range(40))
        assert all(x.value.split()[1] and int(x.value.split()[1]) % 5 == int(x.key[4:]) for x in recs)

        # acks=none: nothing printed, records there
        r = run_example("producer.py", ["--server", s.addr, "--topic", "demo", "--partition", "1", "--acks", "none"],
                        b"a\nb\nc\n")
        assert r.returncode == 0 and r.stdout == b"", (r.stdout, r.stderr)
        assert b"sent 3 records with acks=none" in r.stderr

        # refusals are reported per line range, exit status 1
        r = run_example("producer.py", ["--server", s.addr, "--topic", "nosuch", "--batch", "2"], b"1\n2\n3\n")
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert b"lines 1-2 refused: NOT_FOUND" in r.stderr and b"lines 3-3 refused" in r.stderr, r.stderr
        r = run_example("producer.py", ["--server", s.addr, "--topic", "demo", "--partition", "9"], b"x\n")
        assert r.returncode == 1 and b"NOT_FOUND" in r.stderr, r.stderr

        # no server: the stream fails, exit status 2
        r = run_example("producer.py", ["--server", "127.0.0.1:1", "--topic", "demo"], b"x\n")
        assert r.returncode == 2 and b"stream failed: UNAVAILABLE" in r.stderr, (r.returncode, r.stderr)
    sbtest.cleanup(os.path.dirname(s.data_dir))


def test_subscriber_follows_across_restart():
    """subscriber.py prints every record exactly once across a SIGTERM + restart."""
    data = os.path.join(scratch_dir("ex-sub"), "data")
    s = Server(data_dir=data).start()
    port = s.port
    sub = None
    try:
        s.admin.CreateTopic(pb.CreateTopicRequest(name="follow", partitions=2))
        sbtest.produce(s, "follow", [pb.Record(key=b"k%d" % i, value=b"v%d" % i) for i in range(30)], per_request=10)
        sub = subprocess.Popen([PY, os.path.join(EXAMPLES, "subscriber.py"), "--server", "127.0.0.1:%d" % port,
                                "--topic", "follow", "--partition", "0", "--from", "earliest", "--max-backoff", "0.5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in sub.stdout], daemon=True).start()
        errs = []
        threading.Thread(target=lambda: [errs.append(x) for x in sub.stderr], daemon=True).start()

        def take(n, timeout=30):
            out = []
            deadline = time.time() + timeout
            while len(out) < n:
                try:
                    out.append(lines.get(timeout=max(0.01, deadline - time.time())).decode().rstrip("\n"))
                except queue.Empty:
                    raise AssertionError("subscriber printed %d of %d lines; stderr: %s" % (
                        len(out), n, b"".join(errs)[-2000:]))
            return out

        seen = take(30)
        # tail-follow: a record produced now shows up
        sbtest.produce(s, "follow", [pb.Record(value=b"tail")])
        seen += take(1)
        rc = s.stop()
        assert rc == 0, s.read_log()[-2000:]
        time.sleep(0.3)  # the subscriber is now reconnecting with backoff
        s = Server(data_dir=data, args=["--listen", "127.0.0.1:%d" % port]).start()
        sbtest.produce(s, "follow", [pb.Record(value=b"after %d" % i) for i in range(20)], per_request=5)
        seen += take(20)
        time.sleep(0.3)
        assert lines.empty(), "extra output: %r" % lines.get()
        want = ["%d\tk%d\tv%d" % (i, i, i) for i in range(30)] + ["30\t\ttail"] + \
               ["%d\t\tafter %d" % (31 + i, i) for i in range(20)]
        assert seen == want, seen
        err = b"".join(errs).decode()
        assert "UNAVAILABLE" in err and "reconnecting" in err and "at offset 31" in err, err
    finally:
        if sub:
            sub.send_signal(signal.SIGINT)
            try:
                sub.wait(10)
            except subprocess.TimeoutExpired:
                sub.kill()
        rc = s.stop()
        assert rc == 0
    # --until-end from an offset: a bounded dump that exits 0
    with Server(data_dir=data) as s2:
        r = run_example("subscriber.py", ["--server", s2.addr, "--topic", "follow", "--from", "45", "--until-end"])
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().splitlines() == ["%d\t\tafter %d" % (45 + i, 14 + i) for i in range(6)]
        r = run_example("subscriber.py", ["--server", s2.addr, "--topic", "follow", "--from", "999"])
        assert r.returncode == 1 and b"OUT_OF_RANGE" in r.stderr, r.stderr
        r = run_example("subscriber.py", ["--server", s2.addr, "--topic", "nosuch"])
        assert r.returncode == 1 and b"NOT_FOUND" in r.stderr, r.stderr
    sbtest.cleanup(os.path.dirname(data))


if __name__ == "__main__":
    run_tests([
        test_gen_stubs_and_imports,
        test_producer,
        test_subscriber_follows_across_restart,
    ])
