"""The /metrics endpoint (--metrics-listen): values follow what clients did,
the exposition passes `promtool check metrics`, a cluster reports in-sync
replicas and follower lag. Run by CTest (it_test_metrics)."""
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

from sbtest import Server, cleanup, free_port, grpc, pb, produce, run_tests, scratch_dir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def metrics_port(s):
    m = re.search(r"event=metrics_listening .*?port=(\d+)", s.read_log())
    assert m, s.read_log()
    return int(m.group(1))


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        return r.read().decode()


def parse(text):
    """{(name, frozenset(labels.items())): value} of every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, "bad sample line: %r" % line
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def value(samples, name, **labels):
    return samples[(name, frozenset({k: str(v) for k, v in labels.items()}.items()))]


def promtool():
    """Path of promtool (scripts/promtool.sh fetches it from Debian), or None."""
    out = os.path.join(os.environ.get("SB_TEST_TMP", "/tmp"), "promtool")
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "promtool.sh"), out], capture_output=True,
                       timeout=300)
    path = r.stdout.decode().strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None
    if not path:
        print("promtool unavailable: %s" % r.stderr.decode()[-500:])
    return path


def test_single_node():
    d = scratch_dir("metrics")
    with Server(args=["--metrics-listen", "127.0.0.1:0"], data_dir=os.path.join(d, "data")) as s:
        port = metrics_port(s)
        s.admin.CreateTopic(pb.CreateTopicRequest(name="m", partitions=2), timeout=10)
        resps = produce(s, "m", [pb.Record(value=b"v%d" % i) for i in range(250)], partition=1, per_request=50)
        assert all(r.error_code == 0 for r in resps)
        got = sum(len(r.records) for r in s.sb.Consume(pb.ConsumeRequest(topic="m", partition=1,
                                                                           stop=pb.STOP_AT_END), timeout=10))
        assert got == 250
        for _ in range(3):  # three failed requests of known codes
            try:
                s.sb.Fetch(pb.FetchRequest(topic="nope", partition=0, offset=0), timeout=10)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND
        text = scrape(port)
        m = parse(text)
        assert value(m, "streambus_produced_records_total", topic="m") == 250
        assert value(m, "streambus_consumed_records_total", topic="m") == 250
        assert value(m, "streambus_produced_bytes_total", topic="m") == value(m, "streambus_log_bytes", topic="m",
                                                                              partition=1)
        assert value(m, "streambus_log_end_offset", topic="m", partition=1) == 250
        assert value(m, "streambus_log_end_offset", topic="m", partition=0) == 0
        assert value(m, "streambus_high_watermark", topic="m", partition=1) == 250
        assert value(m, "streambus_log_start_offset", topic="m", partition=1) == 0
        assert value(m, "streambus_log_segments", topic="m", partition=1) == 1
        assert value(m, "streambus_insync_replicas", topic="m", partition=1) == 1
        assert value(m, "streambus_log_failed", topic="m", partition=1) == 0
        assert value(m, "streambus_requests_failed_total", code="NOT_FOUND") == 3
        assert value(m, "streambus_produce_ack_latency_seconds_count") == 5  # five requests of 50
        assert value(m, "streambus_produce_ack_latency_seconds_bucket", le="+Inf") == 5
        assert value(m, "streambus_fsync_latency_seconds_count") >= 1
        assert value(m, "streambus_is_leader") == 1 and value(m, "streambus_leader_epoch") == 0
        backends = [k for k in m if k[0] == "streambus_io_backend"]
        assert len(backends) == 1 and dict(backends[0][1])["backend"] in ("io_uring", "sync"), backends
        # Cumulative buckets never decrease.
        b = [v for (n, l), v in m.items() if n == "streambus_fsync_latency_seconds_bucket"]
        assert len(b) == 18
        # Anything but GET /metrics is refused; the server keeps serving.
        for url, method, code in (("/", "GET", 404), ("/metrics", "POST", 405)):
            req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, url), method=method,
                                         data=b"" if method == "POST" else None)
            try:
                urllib.request.urlopen(req, timeout=10)
                raise AssertionError("%s %s answered 200" % (method, url))
            except urllib.error.HTTPError as e:
                assert e.code == code, (url, e.code)
        assert "streambus_build_info" in scrape(port)
        tool = promtool()
        if tool:
            path = os.path.join(d, "metrics.txt")
            with open(path, "w") as f:
                f.write(text)
            with open(path) as f:
                r = subprocess.run([tool, "check", "metrics"], stdin=f, capture_output=True, timeout=60)
            assert r.returncode == 0, r  # lint problems are printed and fail it
            print("promtool check metrics: ok")
        elif not os.environ.get("SB_ALLOW_NO_PROMTOOL"):
            raise AssertionError("promtool unavailable (scripts/promtool.sh fetches it from Debian; "
                                 "SB_ALLOW_NO_PROMTOOL=1 skips this check)")
    cleanup(d)


def test_cluster_lag_and_isr():
    d = scratch_dir("metrics-cluster")
    ports = [free_port(), free_port()]
    peers = ",".join("%d=127.0.0.1:%d" % (i, p) for i, p in enumerate(ports))
    nodes = [Server(args=["--node-id", str(i), "--peers", peers, "--metrics-listen", "127.0.0.1:0",
                          "--replica-lag-max-ms", "1000"],
                    listen="127.0.0.1:%d" % ports[i], data_dir=os.path.join(d, "n%d" % i)).spawn() for i in (0, 1)]
    try:
        for n in nodes:
            n.wait_serving()
        leader = nodes[0]
        leader.admin.CreateTopic(pb.CreateTopicRequest(name="r", partitions=1), timeout=10)
        deadline = time.time() + 30
        while True:
            r = produce(leader, "r", [pb.Record(value=b"x")] * 10, acks=pb.ACKS_ALL)
            if r[0].error_code == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert r[0].error_code == 0, r
        deadline = time.time() + 20
        while True:  # the follower joins the in-sync set once it has caught up
            m = parse(scrape(metrics_port(leader)))
            if value(m, "streambus_insync_replicas", topic="r", partition=0) == 2 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert value(m, "streambus_insync_replicas", topic="r", partition=0) == 2
        assert value(m, "streambus_replica_in_sync", topic="r", partition=0, follower=1) == 1
        assert value(m, "streambus_replica_lag_records", topic="r", partition=0, follower=1) == 0
        assert value(m, "streambus_active_follow_streams") == 1
        f = parse(scrape(metrics_port(nodes[1])))
        assert value(f, "streambus_is_leader") == 0
        assert value(f, "streambus_log_end_offset", topic="r", partition=0) >= 10
        assert not [k for k in f if k[0] == "streambus_replica_lag_records"]  # only the leader reports lag
        # The follower stops: it leaves the in-sync set and its lag grows.
        nodes[1].stop()
        produce(leader, "r", [pb.Record(value=b"y")] * 5)
        time.sleep(2.0)
        m = parse(scrape(metrics_port(leader)))
        assert value(m, "streambus_replica_in_sync", topic="r", partition=0, follower=1) == 0
        assert value(m, "streambus_insync_replicas", topic="r", partition=0) == 1
        assert value(m, "streambus_replica_lag_records", topic="r", partition=0, follower=1) >= 5
        assert value(m, "streambus_replica_lag_seconds", topic="r", partition=0, follower=1) >= 1.0
    finally:
        for n in nodes:
            n.stop()
    cleanup(d)


if __name__ == "__main__":
    run_tests([test_single_node, test_cluster_lag_and_isr])
