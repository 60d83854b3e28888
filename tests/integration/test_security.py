"""Security: tokens and per-topic permissions, TLS and mTLS (Python grpcio
secure channels), certificate and token reload on SIGHUP, the --insecure
rule, replication links with TLS and the cluster secret, per-caller limits
and the handshake timeout. Run by CTest (it_test_security)."""
import hashlib
import os
import signal
import socket
import subprocess
import time

import sbcerts
from sbtest import (CLI, Server, cleanup, free_port, grpc, health_pb2, health_pb2_grpc, pb, rpc, run_tests,
                    scratch_dir)

TOKENS = {"ops": "t-ops-0123456789", "alice": "t-alice-0123456789", "bob": "t-bob-0123456789",
          "carol": "t-carol-0123456789", "peer": "t-peer-0123456789"}
SECRET = "cluster-secret-0123456789abcdef"


def sha(tok):
    return hashlib.sha256(tok.encode()).hexdigest()


def tokens_file(d, lines):
    path = os.path.join(d, "tokens")
    with open(path, "w") as f:
        f.write("# test tokens: sha256 principal permissions\n")
        for name, perms in lines:
            f.write("%s %s %s\n" % (sha(TOKENS[name]), name, perms))
    return path


STANDARD = [("ops", "admin"), ("alice", "produce:orders.* consume:orders.*"), ("bob", "consume:logs")]


def md(name):
    return (("authorization", "Bearer " + TOKENS[name]),)


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def produce_one(stub, topic, who, value=b"v"):
    req = pb.ProduceRequest(request_id=1, topic=topic, partition=0, records=[pb.Record(value=value)])
    return list(stub.Produce(iter([req]), metadata=md(who) if who else None, timeout=20))


def test_tokens_and_permissions():
    d = scratch_dir("sec-tokens")
    path = tokens_file(d, STANDARD)
    s = Server(args=["--tokens-file", path], data_dir=os.path.join(d, "data"))
    with s:
        # Health answers probes without a token; everything else needs one.
        assert s.health.Check(health_pb2.HealthCheckRequest(service="")).status == 1
        assert code_of(lambda: s.admin.ListTopics(pb.ListTopicsRequest(), timeout=10)) == \
            grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: s.admin.ListTopics(pb.ListTopicsRequest(), timeout=10,
                                                  metadata=(("authorization", "Bearer wrong"),))) == \
            grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: produce_one(s.sb, "orders.a", None)) == grpc.StatusCode.UNAUTHENTICATED
        # Admin creates; others may not.
        for t in ("orders.a", "logs", "secret"):
            s.admin.CreateTopic(pb.CreateTopicRequest(name=t, partitions=1), metadata=md("ops"), timeout=10)
        assert code_of(lambda: s.admin.CreateTopic(pb.CreateTopicRequest(name="x", partitions=1),
                                                   metadata=md("alice"), timeout=10)) == \
            grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: s.admin.DeleteTopic(pb.DeleteTopicRequest(name="logs"), metadata=md("bob"),
                                                   timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
        # alice produces to orders.* only.
        r = produce_one(s.sb, "orders.a", "alice")
        assert r[0].error_code == 0, r
        denied = {}
        for t in ("logs", "secret", "no-such-topic"):
            r = produce_one(s.sb, t, "alice")
            assert r[0].error_code == grpc.StatusCode.PERMISSION_DENIED.value[0], r
            denied[t] = r[0].error_message.replace(t, "T")
        # "no such topic" and "not allowed" look the same to her.
        assert denied["secret"] == denied["no-such-topic"] == denied["logs"], denied
        # Reads: Fetch, Consume and Describe of a topic she may not see.
        for t in ("secret", "no-such-topic"):
            assert code_of(lambda: s.sb.Fetch(pb.FetchRequest(topic=t, partition=0, offset=0), metadata=md("alice"),
                                              timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
            assert code_of(lambda: list(s.sb.Consume(pb.ConsumeRequest(topic=t, stop=pb.STOP_AT_END),
                                                     metadata=md("alice"), timeout=10))) == \
                grpc.StatusCode.PERMISSION_DENIED
            assert code_of(lambda: s.admin.DescribeTopic(pb.DescribeTopicRequest(name=t), metadata=md("alice"),
                                                         timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
        f = s.sb.Fetch(pb.FetchRequest(topic="orders.a", partition=0, offset=0), metadata=md("alice"), timeout=10)
        assert [x.value for x in f.records] == [b"v"]
        # Listing shows only what the caller may see.
        names = sorted(t.name for t in s.admin.ListTopics(pb.ListTopicsRequest(), metadata=md("alice"),
                                                          timeout=10).topics)
        assert names == ["orders.a"], names
        names = sorted(t.name for t in s.admin.ListTopics(pb.ListTopicsRequest(), metadata=md("ops"),
                                                          timeout=10).topics)
        assert names == ["logs", "orders.a", "secret"], names
        # bob consumes logs, cannot produce there.
        assert produce_one(s.sb, "logs", "bob")[0].error_code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert produce_one(s.sb, "logs", "ops")[0].error_code == 0
        assert len(list(s.sb.Consume(pb.ConsumeRequest(topic="logs", stop=pb.STOP_AT_END), metadata=md("bob"),
                                     timeout=10))) >= 1
        # The tokens never appear in the server's log.
        log = s.read_log()
        assert not any(tok in log for tok in TOKENS.values())
    cleanup(d)


def test_cli_token():
    d = scratch_dir("sec-cli")
    path = tokens_file(d, STANDARD)
    with Server(args=["--tokens-file", path], data_dir=os.path.join(d, "data")) as s:
        base = [CLI, "--server", s.addr]
        env = dict(os.environ)
        env.pop("STREAMBUS_TOKEN", None)
        r = subprocess.run(base + ["topic", "list"], capture_output=True, env=env, timeout=30)
        assert r.returncode == 9 and b"UNAUTHENTICATED" in r.stderr, r
        r = subprocess.run(base + ["--token", TOKENS["ops"], "topic", "create", "orders.cli"], capture_output=True,
                           env=env, timeout=30)
        assert r.returncode == 0, r
        env["STREAMBUS_TOKEN"] = TOKENS["alice"]
        r = subprocess.run(base + ["produce", "-t", "orders.cli"], input=b"one\ntwo\n", capture_output=True,
                           env=env, timeout=30)
        assert r.returncode == 0, r
        r = subprocess.run(base + ["topic", "create", "nope"], capture_output=True, env=env, timeout=30)
        assert r.returncode == 9 and b"PERMISSION_DENIED" in r.stderr, r
        r = subprocess.run(base + ["consume", "-t", "orders.cli", "-e"], capture_output=True, env=env, timeout=30)
        assert r.returncode == 0 and b"one" in r.stdout and b"two" in r.stdout, r
    cleanup(d)


def test_python_example_token_and_tls():
    """examples/python take --token and --tls-ca like the CLI."""
    d = scratch_dir("sec-example")
    ca = sbcerts.CA()
    ca_pem = sbcerts.write(d, "ca.pem", ca.pem())
    crt, key = sbcerts.write_pair(d, "server", ca.issue("server"))
    path = tokens_file(d, STANDARD)
    here = os.path.dirname(os.path.abspath(__file__))
    producer = os.path.join(here, "..", "..", "examples", "python", "producer.py")
    env = dict(os.environ, STREAMBUS_STUBS=os.environ.get("SB_PY", ""))
    env.pop("STREAMBUS_TOKEN", None)
    with Server(args=["--tokens-file", path, "--tls-cert", crt, "--tls-key", key],
                data_dir=os.path.join(d, "data")) as s:
        base = ["/usr/bin/python3", producer, "--server", s.addr, "--tls-ca", ca_pem, "--topic", "orders.py"]
        r = subprocess.run(base + ["--create", "1"], input=b"a\n", capture_output=True, env=env, timeout=60)
        assert r.returncode == 2 and b"UNAUTHENTICATED" in r.stderr, r
        r = subprocess.run(base + ["--token", TOKENS["ops"], "--create", "1"], input=b"a\nb\n",
                           capture_output=True, env=env, timeout=60)
        assert r.returncode == 0 and r.stdout.split() == [b"0", b"0", b"0", b"1"], r
        env["STREAMBUS_TOKEN"] = TOKENS["bob"]  # may not produce there
        r = subprocess.run(base, input=b"c\n", capture_output=True, env=env, timeout=60)
        assert r.returncode == 1 and b"PERMISSION_DENIED" in r.stderr, r
    cleanup(d)


def test_tokens_reload_on_sighup():
    d = scratch_dir("sec-reload")
    path = tokens_file(d, STANDARD)
    with Server(args=["--tokens-file", path], data_dir=os.path.join(d, "data")) as s:
        lt = lambda who: code_of(lambda: s.admin.ListTopics(pb.ListTopicsRequest(), metadata=md(who), timeout=10))  # noqa: E731
        assert lt("carol") == grpc.StatusCode.UNAUTHENTICATED
        tokens_file(d, [("ops", "admin"), ("carol", "consume:*")])  # alice removed, carol added
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while lt("carol") != grpc.StatusCode.OK and time.time() < deadline:
            time.sleep(0.05)
        assert lt("carol") == grpc.StatusCode.OK
        assert lt("alice") == grpc.StatusCode.UNAUTHENTICATED
        # A broken file leaves the tokens in force and says so.
        with open(path, "a") as f:
            f.write("not-a-hash someone admin\n")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "tokens_reload_failed" not in s.read_log() and time.time() < deadline:
            time.sleep(0.05)
        assert "tokens_reload_failed" in s.read_log()
        assert lt("carol") == grpc.StatusCode.OK
    cleanup(d)


def tls_channel(addr, ca, cert=None, key=None, token=None):
    rd = lambda p: open(p, "rb").read() if p else None  # noqa: E731
    creds = grpc.ssl_channel_credentials(rd(ca), rd(key), rd(cert))
    if token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(addr, creds)


def check_call(ch):
    """Health.Check over ch: OK, or the failure's status code."""
    try:
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()
    finally:
        ch.close()


def test_tls_and_mtls():
    d = scratch_dir("sec-tls")
    ca, other = sbcerts.CA(), sbcerts.CA("other-ca")
    ca_pem = sbcerts.write(d, "ca.pem", ca.pem())
    other_pem = sbcerts.write(d, "other.pem", other.pem())
    crt, key = sbcerts.write_pair(d, "server", ca.issue("server"))
    ecrt, ekey = sbcerts.write_pair(d, "expired", ca.issue("server", expired=True))
    ccrt, ckey = sbcerts.write_pair(d, "client", ca.issue("client", server=False))
    xcrt, xkey = sbcerts.write_pair(d, "client-other", other.issue("client", server=False))
    xpcrt, xpkey = sbcerts.write_pair(d, "client-expired", ca.issue("client", server=False, expired=True))

    # TLS, no client certificates.
    with Server(args=["--tls-cert", crt, "--tls-key", key], data_dir=os.path.join(d, "d1")) as s:
        assert check_call(tls_channel(s.addr, ca_pem)) == grpc.StatusCode.OK
        assert check_call(grpc.insecure_channel(s.addr)) == grpc.StatusCode.UNAVAILABLE  # plaintext refused
        assert check_call(tls_channel(s.addr, other_pem)) == grpc.StatusCode.UNAVAILABLE  # wrong CA
        r = subprocess.run([CLI, "--server", s.addr, "--tls-ca", ca_pem, "health"], capture_output=True, timeout=30)
        assert r.returncode == 0, r
        r = subprocess.run([CLI, "--server", s.addr, "--tls-ca", other_pem, "--timeout", "3", "health"],
                           capture_output=True, timeout=30)
        assert r.returncode == 4, r
        # Certificate rotation: SIGHUP makes new handshakes use the new files.
        sbcerts.write_pair(d, "server", other.issue("server"))
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while check_call(tls_channel(s.addr, other_pem)) != grpc.StatusCode.OK and time.time() < deadline:
            time.sleep(0.1)
        assert check_call(tls_channel(s.addr, other_pem)) == grpc.StatusCode.OK
        assert check_call(tls_channel(s.addr, ca_pem)) == grpc.StatusCode.UNAVAILABLE
    sbcerts.write_pair(d, "server", ca.issue("server"))

    # An expired server certificate: clients refuse the handshake.
    with Server(args=["--tls-cert", ecrt, "--tls-key", ekey], data_dir=os.path.join(d, "d2")) as s:
        assert check_call(tls_channel(s.addr, ca_pem)) == grpc.StatusCode.UNAVAILABLE

    # mTLS: a client certificate from the CA is required.
    with Server(args=["--tls-cert", crt, "--tls-key", key, "--tls-client-ca", ca_pem],
                data_dir=os.path.join(d, "d3")) as s:
        assert check_call(tls_channel(s.addr, ca_pem, ccrt, ckey)) == grpc.StatusCode.OK
        assert check_call(tls_channel(s.addr, ca_pem)) == grpc.StatusCode.UNAVAILABLE      # no certificate
        assert check_call(tls_channel(s.addr, ca_pem, xcrt, xkey)) == grpc.StatusCode.UNAVAILABLE    # other CA
        assert check_call(tls_channel(s.addr, ca_pem, xpcrt, xpkey)) == grpc.StatusCode.UNAVAILABLE  # expired
        r = subprocess.run([CLI, "--server", s.addr, "--tls-ca", ca_pem, "--tls-cert", ccrt, "--tls-key", ckey,
                            "health"], capture_output=True, timeout=30)
        assert r.returncode == 0, r
    cleanup(d)


def test_insecure_rule():
    d = scratch_dir("sec-insecure")
    # Beyond loopback without TLS or tokens: refused before anything binds.
    r = subprocess.run([os.environ.get("STREAMBUSD", "streambusd"), "--listen", "0.0.0.0:%d" % free_port(),
                        "--data-dir", os.path.join(d, "data")], capture_output=True, timeout=30)
    assert r.returncode != 0 and b"--insecure" in r.stderr, r
    with Server(data_dir=os.path.join(d, "data2")) as s:
        assert "no security: loopback only" in s.read_log()
    cleanup(d)


def test_cluster_tls_and_secret():
    """Two nodes over mTLS, tokens for clients, the cluster secret between
    nodes: ACKS_ALL works; a follower with a wrong secret is refused."""
    d = scratch_dir("sec-cluster")
    ca = sbcerts.CA()
    ca_pem = sbcerts.write(d, "ca.pem", ca.pem())
    crt, key = sbcerts.write_pair(d, "node", ca.issue("node"))
    ccrt, ckey = sbcerts.write_pair(d, "client", ca.issue("client", server=False))
    tok = tokens_file(d, STANDARD)
    good = sbcerts.write(d, "secret", SECRET.encode() + b"\n")
    bad = sbcerts.write(d, "secret-bad", b"not-the-cluster-secret\n")
    ports = [free_port(), free_port()]
    peers = ",".join("%d=127.0.0.1:%d" % (i, p) for i, p in enumerate(ports))

    def node(i, secret):
        return Server(args=["--node-id", str(i), "--peers", peers, "--tls-cert", crt, "--tls-key", key,
                            "--tls-client-ca", ca_pem, "--tls-ca", ca_pem, "--tokens-file", tok,
                            "--cluster-secret-file", secret, "--replica-lag-max-ms", "2000"],
                      listen="127.0.0.1:%d" % ports[i], data_dir=os.path.join(d, "n%d-%s" % (i, os.path.basename(secret))))

    def acks_all_produce(addr):
        ch = tls_channel(addr, ca_pem, ccrt, ckey, token=TOKENS["ops"])
        try:
            adm, sb = rpc.AdminStub(ch), rpc.StreamBusStub(ch)
            try:
                adm.CreateTopic(pb.CreateTopicRequest(name="orders.r", partitions=1,
                                                      config=pb.TopicConfig(min_insync_replicas=2)), timeout=10)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e
            req = pb.ProduceRequest(request_id=1, topic="orders.r", partition=0, acks=pb.ACKS_ALL,
                                    records=[pb.Record(value=b"x")])
            return list(sb.Produce(iter([req]), timeout=20))[0]
        finally:
            ch.close()

    n0, n1 = node(0, good).spawn(), node(1, good).spawn()
    try:
        n0.wait_serving(), n1.wait_serving()
        deadline = time.time() + 30
        r = acks_all_produce(n0.addr)
        while r.error_code != 0 and time.time() < deadline:
            time.sleep(0.3)
            r = acks_all_produce(n0.addr)
        assert r.error_code == 0, r
    finally:
        n1.stop()
        n0.stop()
    n0.check_log()
    n1.check_log()

    n0, n1 = node(0, good).spawn(), node(1, bad).spawn()
    try:
        n0.wait_serving(), n1.wait_serving()
        # The follower's refusals are logged at most every 5 s (rate limit).
        deadline = time.time() + 20
        while "UNAUTHENTICATED" not in n1.read_log() and time.time() < deadline:
            time.sleep(0.2)
        assert "UNAUTHENTICATED" in n1.read_log(), n1.read_log()[-3000:]
        r = acks_all_produce(n0.addr)
        assert r.error_code == grpc.StatusCode.UNAVAILABLE.value[0], r  # the follower never got in sync
    finally:
        n1.stop()
        n0.stop()
    cleanup(d)


def test_limits():
    d = scratch_dir("sec-limits")
    with Server(args=["--limit-rate", "5", "--limit-burst", "5", "--limit-streams", "3"],
                data_dir=os.path.join(d, "data")) as s:
        s.admin.CreateTopic(pb.CreateTopicRequest(name="lim", partitions=1), timeout=10)
        time.sleep(1.2)  # refill the bucket
        codes, retry = [], None
        for _ in range(15):
            try:
                s.admin.ListTopics(pb.ListTopicsRequest(), timeout=10)
                codes.append("OK")
            except grpc.RpcError as e:
                codes.append(e.code().name)
                retry = dict(e.trailing_metadata() or ()).get("streambus-retry-after-ms", retry)
        assert codes[:5] == ["OK"] * 5, codes
        assert codes.count("RESOURCE_EXHAUSTED") >= 8, codes
        assert retry is not None and 0 < int(retry) <= 1000, retry
        time.sleep(1.2)
        # Three concurrent streams per connection/principal; the fourth is refused.
        calls = [s.sb.Consume(pb.ConsumeRequest(topic="lim", stop=pb.STOP_NEVER)) for _ in range(3)]
        time.sleep(1.0)
        try:
            assert code_of(lambda: list(s.sb.Consume(pb.ConsumeRequest(topic="lim", stop=pb.STOP_AT_END),
                                                     timeout=10))) == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            for c in calls:
                c.cancel()
        time.sleep(1.2)
        assert code_of(lambda: list(s.sb.Consume(pb.ConsumeRequest(topic="lim", stop=pb.STOP_AT_END),
                                                 timeout=10))) == grpc.StatusCode.OK

    # In-flight produce bytes per caller: requests past the bound are refused
    # (RESOURCE_EXHAUSTED, not appended) and the bytes come back once answered.
    with Server(args=["--limit-inflight-bytes", "300000", "--fsync-policy", "always"],
                data_dir=os.path.join(d, "data2")) as s:
        s.admin.CreateTopic(pb.CreateTopicRequest(name="big", partitions=1), timeout=10)
        value = b"x" * 100000
        reqs = [pb.ProduceRequest(request_id=i, topic="big", partition=0, records=[pb.Record(value=value)])
                for i in range(200)]
        resp = list(s.sb.Produce(iter(reqs), timeout=60))
        codes = [r.error_code for r in resp]
        refused = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        assert refused > 0 and codes.count(0) + refused == len(reqs), codes
        ok = sum(1 for r in resp if r.error_code == 0)
        f = s.sb.Fetch(pb.FetchRequest(topic="big", partition=0, offset=0, max_bytes=16 << 20), timeout=10)
        assert f.high_watermark == ok, (f.high_watermark, ok)  # refused requests were not appended
        assert produce_one(s.sb, "big", None)[0].error_code == 0
    cleanup(d)


def test_silent_connection_closed():
    d = scratch_dir("sec-idle")
    with Server(args=["--handshake-timeout-ms", "500"], data_dir=os.path.join(d, "data")) as s:
        c = socket.create_connection(("127.0.0.1", s.port))
        c.settimeout(10)
        t0 = time.time()
        closed = False
        try:
            while c.recv(4096):  # the server's SETTINGS frame, then nothing
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass
        took = time.time() - t0
        c.close()
        assert closed and took < 8, (closed, took)
        assert s.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == 1
    cleanup(d)


if __name__ == "__main__":
    run_tests([test_tokens_and_permissions, test_cli_token, test_python_example_token_and_tls,
               test_tokens_reload_on_sighup, test_tls_and_mtls,
               test_insecure_rule, test_cluster_tls_and_secret, test_limits, test_silent_connection_closed])
