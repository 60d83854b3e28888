"""Integration tests of the streambus CLI against the real streambusd.

Every CLI run is checked for sanitizer reports on its stderr (the CLI is built
with ASan/UBSan/LSan in the test build); the harness checks the server's log.
Python's grpcio is the independent witness: what the CLI produced is read back
over gRPC, and records the CLI consumes are produced with grpcio.
"""
import base64
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sbtest  # noqa: E402
from sbtest import Server, pb, run_tests  # noqa: E402

CLI = sbtest.CLI
if not os.path.exists(CLI):
    print("streambus CLI not built (%s): skipping" % CLI)
    sys.exit(sbtest.SKIP)


def check_clean(stderr):
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    assert "Sanitizer" not in text and "runtime error:" not in text, "sanitizer report:\n" + text[-6000:]


def cli(server, *args, stdin=b"", timeout=120, addr=None):
    """Runs the CLI; returns (exit status, stdout bytes, stderr text)."""
    cmd = [CLI, "--server", addr or server.addr] + [str(a) for a in args]
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    check_clean(p.stderr)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def create(server, name, *extra):
    rc, out, err = cli(server, "topic", "create", name, *extra)
    assert rc == 0, (rc, err)
    return out


def fetch_all(server, topic, partition=0):
    """Every record of a partition, read with grpcio Fetch."""
    recs, off = [], 0
    while True:
        r = server.sb.Fetch(pb.FetchRequest(topic=topic, partition=partition, offset=off))
        recs.extend(r.records)
        if r.next_offset >= r.high_watermark or not r.records:
            return recs
        off = r.next_offset


def describe(server, topic):
    return server.admin.DescribeTopic(pb.DescribeTopicRequest(name=topic))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- topic ----

def test_topic_create_list_describe_delete():
    with Server(name="cli-topic") as s:
        out = create(s, "orders", "-p", "3", "--fsync", "never", "--retention-bytes", "1m",
                     "--segment-bytes", "64k", "--retention-ms", "3600000")
        assert b"created topic orders" in out
        create(s, "events")
        rc, out, err = cli(s, "topic", "list")
        assert rc == 0, err
        lines = out.decode().splitlines()
        assert lines[0].split()[0] == "TOPIC"
        names = [l.split()[0] for l in lines[1:]]
        assert names == ["events", "orders"], names
        row = [l.split() for l in lines[1:] if l.split()[0] == "orders"][0]
        assert row[1] == "3" and row[2] == "never" and row[3] == str(1 << 20) and row[4] == "3600000", row
        rc, out, err = cli(s, "topic", "describe", "orders")
        assert rc == 0, err
        text = out.decode()
        assert "partitions:  3" in text and "fsync_policy=never" in text and "segment_bytes=65536" in text, text
        rows = [l.split() for l in text.splitlines() if re.match(r"^\s+\d+\s", l)]
        assert [r[0] for r in rows] == ["0", "1", "2"], text
        cfg = describe(s, "orders").topic.config
        assert cfg.fsync_policy == "never" and cfg.retention_bytes == 1 << 20 and cfg.segment_bytes == 65536
        # describe reflects produced data: start, end, high watermark, size, segments
        rc, _, err = cli(s, "produce", "-t", "orders", "-p", "1", stdin=b"a\nb\nc\n")
        assert rc == 0, err
        rc, out, err = cli(s, "topic", "describe", "orders")
        row = [l.split() for l in out.decode().splitlines() if re.match(r"^\s+1\s", l)][0]
        assert row[1:4] == ["0", "3", "3"] and int(row[4]) > 0 and int(row[5]) >= 1, row
        rc, out, err = cli(s, "topic", "delete", "events")
        assert rc == 0 and b"deleted topic events" in out, err
        rc, out, _ = cli(s, "topic", "list")
        assert b"events" not in out


def test_topic_errors():
    with Server(name="cli-topic-err") as s:
        create(s, "dup")
        rc, out, err = cli(s, "topic", "create", "dup")
        assert rc == 5 and "ALREADY_EXISTS" in err and "dup" in err, (rc, err)
        assert err.startswith("streambus: create topic \"dup\": ALREADY_EXISTS: "), err
        rc, _, err = cli(s, "topic", "create", "bad/name")
        assert rc == 6 and "INVALID_ARGUMENT" in err, (rc, err)
        rc, _, err = cli(s, "topic", "create", "x" * 300)
        assert rc == 6 and "INVALID_ARGUMENT" in err, (rc, err)
        for sub in ("describe", "delete"):
            rc, _, err = cli(s, "topic", sub, "nope")
            assert rc == 3 and "NOT_FOUND" in err and "nope" in err, (sub, rc, err)
        # usage errors: exit 2, nothing sent
        for args in (["topic"], ["topic", "create"], ["topic", "frob", "x"], ["topic", "describe", "a", "b"],
                     ["topic", "create", "t", "--fsync", "sometimes"], ["topic", "create", "t", "-p", "zero"],
                     ["topic", "list", "-p", "3"], ["nosuchcommand"], ["--timeout", "abc", "health"],
                     ["produce"], ["produce", "-t", "x", "--acks", "maybe"], ["produce", "-t", "x", "--batch", "0"],
                     ["consume"], ["consume", "-t", "x", "-o", "soon"], ["consume", "-t", "x", "-c", "-1"],
                     ["bench", "--records", "0"], ["bench", "--consume", "--e2e"]):
            rc, _, err = cli(s, *args)
            assert rc == 2, (args, rc, err)
        assert describe(s, "dup").topic.name == "dup"
        assert [t.name for t in s.admin.ListTopics(pb.ListTopicsRequest()).topics] == ["dup"]


def test_help_and_exit_codes_documented():
    p = subprocess.run([CLI, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0
    text = p.stdout.decode()
    for code in ("0", "1", "2", "3", "4", "5", "6", "7", "8"):
        assert re.search(r"^\s+%s\s+\S" % code, text, re.M), code
    for cmd in ("topic", "produce", "consume", "health", "bench"):
        p = subprocess.run([CLI, cmd, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode == 0 and b"usage: streambus " + cmd.encode() in p.stdout, cmd
        check_clean(p.stderr)


# ---- produce / consume ----

def make_lines(n):
    lines = []
    for i in range(n):
        if i % 97 == 0:
            lines.append(b"")                                   # empty record
        elif i % 101 == 0:
            lines.append(bytes([0, 1, 2, 0xff, 0xfe, 9, 13]) + b"bin%d" % i)  # binary, CR, NUL
        else:
            lines.append(b"line %d " % i + b"x" * (i % 50))
    lines[5000] = b"L" * (200 * 1024)                           # longer than 64 KiB
    lines[5001] = bytes(range(256)).replace(b"\n", b"") * 400  # ~100 KiB of every byte
    return lines


def test_produce_then_consume_byte_exact():
    with Server(name="cli-rt") as s:
        create(s, "rt")
        lines = make_lines(10000)
        data = b"\n".join(lines) + b"\n"
        rc, out, err = cli(s, "produce", "-t", "rt", "-p", "0", "--batch", "100", "--window", "8", stdin=data)
        assert rc == 0, err
        assert "produced 10000 records" in err, err
        # one 'partition P offsets A-B' per request, covering 0..9999 without gaps
        acked = []
        for l in out.decode().splitlines():
            m = re.fullmatch(r"partition 0 offsets (\d+)-(\d+)", l)
            assert m, l
            acked.append((int(m.group(1)), int(m.group(2))))
        acked.sort()
        assert acked[0][0] == 0 and acked[-1][1] == 9999
        assert all(b[0] == a[1] + 1 for a, b in zip(acked, acked[1:]))
        assert len(acked) >= 100
        # the server holds exactly these records (grpcio witness)
        recs = fetch_all(s, "rt")
        assert [r.value for r in recs] == lines
        assert all(r.key == b"" for r in recs)
        assert describe(s, "rt").partitions[0].log_end_offset == 10000
        # consume -e gives the same bytes back
        rc, got, err = cli(s, "consume", "-t", "rt", "-e")
        assert rc == 0, err
        assert got == data, "consume output differs from the input"
        # a last line without a newline is a record too; a lone newline is one empty record
        create(s, "tail")
        rc, _, err = cli(s, "produce", "-t", "tail", stdin=b"a\n\nlast")
        assert rc == 0, err
        assert [r.value for r in fetch_all(s, "tail")] == [b"a", b"", b"last"]


def test_produce_keys_and_partitions():
    with Server(name="cli-keys") as s:
        create(s, "k")
        lines = [b"user%d:value %d:with colon" % (i % 7, i) for i in range(2000)] + [b":empty key", b"k:"]
        rc, out, err = cli(s, "produce", "-t", "k", "-K", ":", stdin=b"\n".join(lines) + b"\n")
        assert rc == 0, err
        recs = fetch_all(s, "k")
        assert [(r.key, r.value) for r in recs] == [tuple(l.split(b":", 1)) for l in lines]
        rc, got, err = cli(s, "consume", "-t", "k", "-e", "-K", ":")
        assert rc == 0, err
        assert got == b"\n".join(lines) + b"\n"
        # multi-character and escaped separators
        create(s, "k2")
        rc, _, err = cli(s, "produce", "-t", "k2", "-K", "\\t", stdin=b"a\tb\nc\td\te\nnokey\n")
        assert rc == 0, err
        assert [(r.key, r.value) for r in fetch_all(s, "k2")] == [(b"a", b"b"), (b"c", b"d\te"), (b"", b"nokey")]
        rc, got, _ = cli(s, "consume", "-t", "k2", "-e", "-K", "=>")
        assert got == b"a=>b\nc=>d\te\n=>nokey\n", got
        # several partitions: a key always lands in the same partition; consume reads all
        create(s, "kp", "-p", "4")
        lines = [b"key%d:%d" % (i % 13, i) for i in range(3000)]
        rc, out, err = cli(s, "produce", "-t", "kp", "-K", ":", "--batch", "50", stdin=b"\n".join(lines))
        assert rc == 0, err
        where = {}
        total = 0
        for p in range(4):
            for r in fetch_all(s, "kp", p):
                total += 1
                assert where.setdefault(r.key, p) == p, "key %r in partitions %d and %d" % (r.key, where[r.key], p)
        assert total == 3000 and len(set(where.values())) > 1, where
        rc, got, err = cli(s, "consume", "-t", "kp", "-e", "--json")
        assert rc == 0, err
        objs = [json.loads(l) for l in got.decode().splitlines()]
        assert len(objs) == 3000
        assert sorted(int(o["value"]) for o in objs) == list(range(3000))
        for p in range(4):  # per partition, offsets in order
            offs = [o["offset"] for o in objs if o["partition"] == p]
            assert offs == list(range(len(offs)))
        # an explicit partition wins over the key
        rc, out, err = cli(s, "produce", "-t", "kp", "-p", "2", "-K", ":", stdin=b"key1:x\nkey2:y\n")
        assert rc == 0 and out.decode().split()[:2] == ["partition", "2"], (out, err)


def test_consume_positions_and_count():
    with Server(name="cli-pos") as s:
        create(s, "pos")
        first = [b"a%d" % i for i in range(100)]
        rc, _, err = cli(s, "produce", "-t", "pos", stdin=b"\n".join(first) + b"\n")
        assert rc == 0, err
        time.sleep(0.05)
        ts = int(time.time() * 1000)
        time.sleep(0.05)
        second = [b"b%d" % i for i in range(50)]
        rc, _, err = cli(s, "produce", "-t", "pos", stdin=b"\n".join(second) + b"\n")
        assert rc == 0, err
        allv = first + second
        rc, got, err = cli(s, "consume", "-t", "pos", "-o", "120", "-e")
        assert rc == 0 and got.splitlines() == allv[120:], err
        rc, got, err = cli(s, "consume", "-t", "pos", "-o", "-5", "-e")
        assert rc == 0 and got.splitlines() == allv[-5:], err
        rc, got, err = cli(s, "consume", "-t", "pos", "-o", "@%d" % ts, "-e")
        assert rc == 0 and got.splitlines() == second, (got[:200], err)
        rc, got, err = cli(s, "consume", "-t", "pos", "-o", "@%d" % (ts + 10 ** 9), "-e")
        assert rc == 0 and got == b"", err
        rc, got, err = cli(s, "consume", "-t", "pos", "-c", "7")
        assert rc == 0 and got.splitlines() == allv[:7], err
        rc, got, err = cli(s, "consume", "-t", "pos", "-o", "140", "-c", "3")
        assert rc == 0 and got.splitlines() == allv[140:143], err
        rc, got, err = cli(s, "consume", "-t", "pos", "-o", "latest", "-e")
        assert rc == 0 and got == b"", err
        rc, got, err = cli(s, "consume", "-t", "pos", "-o", "151", "-e")
        assert rc == 6 and "OUT_OF_RANGE" in err and "[0, 150]" in err, (rc, err)
        rc, _, err = cli(s, "consume", "-t", "nope", "-e")
        assert rc == 3 and "NOT_FOUND" in err, (rc, err)
        rc, _, err = cli(s, "consume", "-t", "pos", "-p", "5", "-e")
        assert rc == 3 and "NOT_FOUND" in err and "partition 5" in err, (rc, err)


def test_consume_json():
    with Server(name="cli-json") as s:
        create(s, "j")
        recs = [
            pb.Record(key=b"k1", value=b"plain text", headers=[pb.Header(key="trace", value=b"abc"),
                                                             pb.Header(key="blob", value=b"\x00\xff")]),
            pb.Record(value=bytes(range(256)), timestamp_ms=1234567890123),
            pb.Record(key=b"\xff\xfe", value="ünïcödé \"quoted\" \\ ok".encode()),
            pb.Record(value=b"tab\there"),
            pb.Record(value=b""),
            pb.Record(value=b"\xed\xa0\x80"),  # an encoded surrogate is not valid UTF-8
        ]
        resp = sbtest.produce(s, "j", recs)
        assert all(r.error_code == 0 for r in resp)
        rc, got, err = cli(s, "consume", "-t", "j", "-e", "--json")
        assert rc == 0, err
        objs = [json.loads(l) for l in got.decode("utf-8").splitlines()]
        assert len(objs) == len(recs)
        for i, (o, r) in enumerate(zip(objs, recs)):
            assert o["partition"] == 0 and o["offset"] == i, o
            assert isinstance(o["timestamp_ms"], int) and o["timestamp_ms"] > 0
            if "value" in o:
                assert o["value"].encode("utf-8") == r.value and "value_b64" not in o, o
            else:
                assert base64.b64decode(o["value_b64"]) == r.value, o
            if r.key == b"":
                assert o["key"] is None, o
            elif "key" in o:
                assert o["key"].encode() == r.key
            else:
                assert base64.b64decode(o["key_b64"]) == r.key
        assert objs[0]["key"] == "k1" and objs[0]["value"] == "plain text"
        assert objs[0]["headers"] == {"trace": "abc", "blob_b64": base64.b64encode(b"\x00\xff").decode()}
        assert "value_b64" in objs[1] and objs[1]["timestamp_ms"] == 1234567890123
        assert "key_b64" in objs[2] and objs[2]["value"] == "ünïcödé \"quoted\" \\ ok"
        assert "value_b64" in objs[3]  # a control character (tab): base64
        assert objs[4]["value"] == "" and objs[4]["headers"] == {}
        assert "value_b64" in objs[5]


def read_available(proc, buf, deadline, want):
    """Reads proc.stdout into buf until want(buf) or the deadline."""
    fd = proc.stdout.fileno()
    while not want(buf) and time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.02)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    return buf


def test_consume_follows_the_tail():
    with Server(name="cli-tail") as s:
        create(s, "live")
        proc = subprocess.Popen([CLI, "--server", s.addr, "consume", "-t", "live"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)  # let it connect and park at the end
            assert proc.poll() is None
            buf = b""
            for round_ in range(3):
                lines = [b"live %d %d" % (round_, i) for i in range(5)]
                rc, _, err = cli(s, "produce", "-t", "live", stdin=b"\n".join(lines) + b"\n")
                assert rc == 0, err
                t0 = time.time()
                buf = read_available(proc, buf, t0 + 1.0, lambda b: lines[-1] + b"\n" in b)
                assert lines[-1] + b"\n" in buf, "records did not appear within 1 s: %r" % buf
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
            check_clean(err)
            assert proc.returncode == 0, (proc.returncode, err)
            assert (buf + out).splitlines() == [b"live %d %d" % (r, i) for r in range(3) for i in range(5)]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_consume_reports_resume_offset_when_server_drains():
    s = Server(name="cli-drain").start()
    try:
        create(s, "d")
        rc, _, err = cli(s, "produce", "-t", "d", stdin=b"".join(b"r%d\n" % i for i in range(42)))
        assert rc == 0, err
        proc = subprocess.Popen([CLI, "--server", s.addr, "consume", "-t", "d"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        buf = read_available(proc, b"", time.time() + 10, lambda b: b"r41\n" in b)
        assert b"r41\n" in buf
    finally:
        assert s.stop() == 0
        assert "AddressSanitizer" not in s.read_log() and "runtime error:" not in s.read_log(), s.read_log()
    out, err = proc.communicate(timeout=20)
    check_clean(err)
    err = err.decode()
    assert proc.returncode == 4, (proc.returncode, err)
    assert "UNAVAILABLE" in err and "-o 42" in err, err
    # resume from there on a restarted server: nothing lost, nothing repeated
    with Server(data_dir=s.data_dir, name="cli-drain2") as s2:
        rc, _, e = cli(s2, "produce", "-t", "d", stdin=b"r42\nr43\n")
        assert rc == 0, e
        m = re.search(r"-p (\d+) -o (\d+)", err)
        rc, got, e = cli(s2, "consume", "-t", "d", "-p", m.group(1), "-o", m.group(2), "-e")
        assert rc == 0 and got == b"r42\nr43\n", (got, e)


def test_produce_errors_and_acks():
    with Server(name="cli-perr") as s:
        rc, out, err = cli(s, "produce", "-t", "missing", stdin=b"a\nb\n")
        assert rc == 3 and "NOT_FOUND" in err and "missing" in err, (rc, err)
        assert out == b""
        create(s, "one")
        rc, out, err = cli(s, "produce", "-t", "one", "-p", "3", stdin=b"a\n")
        assert rc == 3 and "NOT_FOUND" in err, (rc, err)
        # acks none: no responses, but everything is appended; acks all on one node works
        lines = [b"n%d" % i for i in range(1000)]
        rc, out, err = cli(s, "produce", "-t", "one", "--acks", "none", "--batch", "10", stdin=b"\n".join(lines))
        assert rc == 0 and out == b"", (rc, out, err)
        rc, out, err = cli(s, "produce", "-t", "one", "--acks", "all", "--window", "1", "--batch", "7",
                           stdin=b"\n".join(lines))
        assert rc == 0 and len(out.splitlines()) == 143, err
        assert [r.value for r in fetch_all(s, "one")] == lines + lines
        # headers on every record
        create(s, "h")
        rc, _, err = cli(s, "produce", "-t", "h", "-H", "src=cli", "-H", "x=1=2", stdin=b"v\n")
        assert rc == 0, err
        r = fetch_all(s, "h")[0]
        assert [(h.key, h.value) for h in r.headers] == [("src", b"cli"), ("x", b"1=2")]
        # an unreachable server: UNAVAILABLE, exit 4
        port = free_port()
        for args in (["produce", "-t", "one"], ["consume", "-t", "one", "-p", "0"], ["topic", "list"]):
            rc, _, err = cli(s, *args, stdin=b"a\n", addr="127.0.0.1:%d" % port)
            assert rc == 4 and "UNAVAILABLE" in err, (args, rc, err)


def test_produce_flushes_partial_batches_and_stops_on_sigint():
    """A slow writer: each line is sent without waiting for --batch lines;
    Ctrl-C stops reading, waits for the answers and exits 0."""
    with Server(name="cli-slow") as s:
        create(s, "slow")
        proc = subprocess.Popen([CLI, "--server", s.addr, "produce", "-t", "slow", "--batch", "1000"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            buf = b""
            for i in range(3):
                proc.stdin.write(b"slow %d\n" % i)
                proc.stdin.flush()
                buf = read_available(proc, buf, time.time() + 2, lambda b: b"offsets %d-%d" % (i, i) in b)
                assert b"offsets %d-%d" % (i, i) in buf, buf
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
            check_clean(err)
            assert proc.returncode == 0, (proc.returncode, err)
            assert b"produced 3 records" in err, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert [r.value for r in fetch_all(s, "slow")] == [b"slow 0", b"slow 1", b"slow 2"]


def test_consume_into_closed_pipe():
    with Server(name="cli-pipe") as s:
        create(s, "p")
        rc, _, err = cli(s, "produce", "-t", "p", stdin=b"".join(b"%d\n" % i for i in range(50000)))
        assert rc == 0, err
        c = subprocess.Popen([CLI, "--server", s.addr, "consume", "-t", "p"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        h = subprocess.run(["head", "-n", "3"], stdin=c.stdout, stdout=subprocess.PIPE)
        c.stdout.close()
        err = c.stderr.read()
        c.wait(timeout=20)
        check_clean(err)
        assert h.stdout == b"0\n1\n2\n" and c.returncode == 0, (c.returncode, err)


# ---- health ----

def test_health():
    with Server(name="cli-health") as s:
        for svc in ([], ["--service", ""], ["--service", "readiness"], ["--service", "liveness"]):
            rc, out, err = cli(s, "health", *svc)
            assert rc == 0 and out == b"SERVING\n", (svc, rc, out, err)
        rc, out, err = cli(s, "health", "--service", "bogus")
        assert rc == 3 and "NOT_FOUND" in err, (rc, err)
    rc, out, err = cli(None, "health", addr="127.0.0.1:%d" % free_port())
    assert rc == 4 and "UNAVAILABLE" in err and out == b"", (rc, err)
    assert err.startswith("streambus: health check"), err
    # a peer that accepts TCP but never speaks HTTP/2: --timeout bounds the wait
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    try:
        addr = "127.0.0.1:%d" % hang.getsockname()[1]
        for args in (["health"], ["topic", "list"], ["consume", "-t", "x", "-p", "0"], ["produce", "-t", "x"]):
            t0 = time.time()
            rc, out, err = cli(None, "--timeout", "0.5", *args, addr=addr)
            assert rc == 4 and "DEADLINE_EXCEEDED" in err and time.time() - t0 < 10, (args, rc, err)
    finally:
        hang.close()


# ---- bench ----

def bench_numbers(out):
    text = out.decode()
    tp = re.search(r"throughput:\s+(\d+) records/s, ([\d.]+) MB/s", text)
    lat = re.search(r"p50 ([\d.]+) ms\s+p99 ([\d.]+) ms\s+p99\.9 ([\d.]+) ms", text)
    return text, tp, lat


def test_bench():
    with Server(name="cli-bench") as s:
        rc, out, err = cli(s, "bench", "--records", "20000", "--record-size", "64", "--batch", "50",
                           "--window", "8", "--streams", "2", "--fsync", "never", "--topic", "bt")
        assert rc == 0, err
        text, tp, lat = bench_numbers(out)
        assert tp and lat, text
        assert int(tp.group(1)) > 100 and float(tp.group(2)) > 0, text
        p50, p99, p999 = map(float, lat.groups())
        assert 0 < p50 <= p99 <= p999 < 10000, text
        assert "20000 acknowledged, 0 failed" in text, text
        assert "\r[bench" in err, err
        assert describe(s, "bt").topic.partitions == 2
        assert sum(p.log_end_offset for p in describe(s, "bt").partitions) == 20000
        assert describe(s, "bt").topic.config.fsync_policy == "never"
        # fixed rate: 2000 records at 4000/s takes about half a second
        t0 = time.time()
        rc, out, err = cli(s, "bench", "--records", "2000", "--rate", "4000", "--batch", "20", "--topic", "bt")
        took = time.time() - t0
        assert rc == 0, err
        text, tp, lat = bench_numbers(out)
        assert tp and lat and "scheduled send time" in text, text
        assert 0.4 < took < 30, took
        assert 2000 < int(tp.group(1)) < 8000, text
        # consume the partition from the start
        rc, out, err = cli(s, "bench", "--consume", "--topic", "bt", "--partition", "1")
        assert rc == 0, err
        text, tp, _ = bench_numbers(out)
        n = describe(s, "bt").partitions[1].log_end_offset
        assert ("records:      %d " % n) in text and int(tp.group(1)) > 0, text
        # end to end
        rc, out, err = cli(s, "bench", "--e2e", "--records", "1000", "--rate", "2000", "--batch", "10",
                           "--topic", "be")
        assert rc == 0, err
        text = out.decode()
        assert "consumed:     1000 records" in text, text
        e2e = re.search(r"end-to-end:\s+p50 ([\d.]+) ms\s+p99 ([\d.]+) ms\s+p99\.9 ([\d.]+) ms", text)
        assert e2e and 0 < float(e2e.group(1)) <= float(e2e.group(2)) <= float(e2e.group(3)), text
        rc, out, err = cli(s, "bench", "--consume", "--topic", "nope")
        assert rc == 3 and "NOT_FOUND" in err, (rc, err)


if __name__ == "__main__":
    run_tests([
        test_topic_create_list_describe_delete,
        test_topic_errors,
        test_help_and_exit_codes_documented,
        test_produce_then_consume_byte_exact,
        test_produce_keys_and_partitions,
        test_consume_positions_and_count,
        test_consume_json,
        test_consume_follows_the_tail,
        test_consume_reports_resume_offset_when_server_drains,
        test_produce_errors_and_acks,
        test_produce_flushes_partial_batches_and_stops_on_sigint,
        test_consume_into_closed_pipe,
        test_health,
        test_bench,
    ])
