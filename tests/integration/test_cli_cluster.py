"""Integration tests of the streambus CLI against a real 3-node cluster.

Three streambusd processes on 127.0.0.1 (node 0 leads, nodes 1 and 2 follow)
are driven only through the CLI: `cluster info`, and the leader redirect of
the writes (`topic create`, `produce`, `topic delete` sent to a follower are
refused with UNAVAILABLE + streambus-leader and the CLI retries once at the
leader). Every CLI run is checked for sanitizer reports on its stderr, every
server log after the server stopped.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sbtest  # noqa: E402
from sbtest import Server, run_tests  # noqa: E402

CLI = sbtest.CLI
if not os.path.exists(CLI):
    print("streambus CLI not built (%s): skipping" % CLI)
    sys.exit(sbtest.SKIP)

NODES = 3
NOTE = re.compile(r"^streambus: node (\S+) is a follower; sending to the leader at (\S+)$", re.M)


def free_ports(n):
    """n distinct ports that were free a moment ago: all bound to port 0 at
    once (so no two are the same), then closed."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_cluster():
    """Starts nodes 0..2 (0 leads); retries with new ports if one was taken meanwhile."""
    base = sbtest.scratch_dir("cli-cluster")
    for attempt in range(3):
        ports = free_ports(NODES)
        peers = ",".join("%d=127.0.0.1:%d" % (i, p) for i, p in enumerate(ports))
        nodes = [Server(listen="127.0.0.1:%d" % p, data_dir=os.path.join(base, "try%d" % attempt, "node%d" % i, "data"),
                        args=["--node-id", str(i), "--peers", peers])
                 for i, p in enumerate(ports)]
        started = []
        try:
            for n in nodes:  # all at once: followers find the leader with back-off
                started.append(n)
                n.spawn()
            for n in nodes:
                n.wait_serving()
            return nodes
        except BaseException as e:
            for n in started:
                n.stop()
            if attempt == 2 or not isinstance(e, RuntimeError):  # RuntimeError: a port was taken
                raise
    raise AssertionError("unreachable")


def check_clean(text):
    assert "Sanitizer" not in text and "runtime error:" not in text, "sanitizer report:\n" + text[-6000:]


def cli(node, *args, stdin=b"", timeout=60):
    """Runs the CLI against node; returns (exit status, stdout bytes, stderr text)."""
    cmd = [CLI, "--server", node.addr] + [str(a) for a in args]
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    err = p.stderr.decode("utf-8", "replace")
    check_clean(err)
    return p.returncode, p.stdout, err


def redirects(err):
    """The (follower, leader) pairs of the redirect notes on stderr."""
    return NOTE.findall(err)


def wait_for(what, fn, timeout=15):
    """Polls fn() until it returns a true value; returns it, or fails with what and the last value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("%s: not within %ss (last: %r)" % (what, timeout, last))


def topics_on(node):
    rc, out, err = cli(node, "topic", "list")
    assert rc == 0, (node.addr, rc, err)
    return [l.split()[0] for l in out.decode().splitlines()[1:]]


def isr_of(node, topic, partition):
    """The REPLICAS and ISR columns of `topic describe` for one partition."""
    rc, out, err = cli(node, "topic", "describe", topic)
    assert rc == 0, (rc, err)
    for l in out.decode().splitlines():
        f = l.split()
        if f and f[0] == str(partition):
            return f[7], f[8]
    raise AssertionError("partition %d missing:\n%s" % (partition, out.decode()))


cluster = []


def leader():
    return cluster[0]


def followers():
    return cluster[1:]


# ---- cluster info ----

def test_cluster_info():
    want = [(i, n.addr, "leader" if i == 0 else "follower") for i, n in enumerate(cluster)]
    for i, n in enumerate(cluster):
        rc, out, err = cli(n, "cluster", "info")
        assert rc == 0 and err == "", (rc, err)
        text = out.decode()
        assert re.search(r"^node:\s+%d$" % i, text, re.M), text
        assert re.search(r"^leader:\s+0 at %s$" % re.escape(leader().addr), text, re.M), text
        assert re.search(r"^leader_epoch:\s+[1-9]\d*$", text, re.M), text
        rows = [l.split() for l in text.splitlines() if re.match(r"^\s+\d+\s", l)]
        assert [(int(r[0]), r[1], r[2]) for r in rows] == want, text
        assert [r[0] for r in rows if "(this node)" in " ".join(r)] == [str(i)], text
        rc, out, err = cli(n, "cluster", "info", "--json")
        assert rc == 0, err
        o = json.loads(out)
        assert o["node_id"] == i and o["leader_id"] == 0 and o["leader_epoch"] >= 1, o
        assert [(x["id"], x["address"], x["role"]) for x in o["nodes"]] == want, o


def test_cluster_usage_and_unreachable():
    for args in (["cluster"], ["cluster", "frob"], ["cluster", "info", "extra"], ["cluster", "info", "--yaml"],
                 ["topic", "create", "t", "--min-insync", "0"], ["topic", "create", "t", "--min-insync", "x"],
                 ["topic", "create", "t", "--replication-factor", "0"], ["topic", "list", "--min-insync", "2"]):
        rc, _, err = cli(leader(), *args)
        assert rc == 2, (args, rc, err)
    for cmd in (["cluster", "--help"], ["topic", "--help"], ["produce", "--help"], ["--help"]):
        p = subprocess.run([CLI] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode == 0, cmd
        check_clean(p.stderr.decode())
    p = subprocess.run([CLI, "topic", "--help"], stdout=subprocess.PIPE)
    assert b"--min-insync N" in p.stdout and b"--replication-factor N" in p.stdout
    p = subprocess.run([CLI, "--help"], stdout=subprocess.PIPE)
    assert b"cluster info" in p.stdout
    port = free_ports(1)[0]
    p = subprocess.run([CLI, "--server", "127.0.0.1:%d" % port, "--timeout", "2", "cluster", "info"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 4 and b"UNAVAILABLE" in p.stderr, (p.returncode, p.stderr)


# ---- writes through a follower ----

def test_topic_create_via_follower_is_redirected():
    f = followers()[1]
    rc, out, err = cli(f, "topic", "create", "orders", "-p", "2", "--min-insync", "2", "--replication-factor", "3")
    assert rc == 0 and out == b"created topic orders\n", (rc, out, err)
    assert redirects(err) == [(f.addr, leader().addr)], err
    assert len(err.splitlines()) == 1, err
    for n in cluster:
        wait_for("topic orders on %s" % n.addr, lambda: "orders" in topics_on(n))
    rc, out, err = cli(followers()[0], "topic", "describe", "orders")
    assert rc == 0, err
    text = out.decode()
    assert "min_insync_replicas=2" in text and "replication: 3" in text, text
    assert isr_of(leader(), "orders", 0)[0] == "0,1,2"
    # the factor reaches the server: a 3-node cluster refuses 2
    rc, _, err = cli(f, "topic", "create", "rf2", "--replication-factor", "2")
    assert rc == 6 and "INVALID_ARGUMENT" in err and len(redirects(err)) == 1, (rc, err)
    # the leader refuses a duplicate: no redirect loop, the leader's own error
    rc, _, err = cli(f, "topic", "create", "orders")
    assert rc == 5 and "ALREADY_EXISTS" in err and len(redirects(err)) == 1, (rc, err)
    # reads are served by the follower itself: no note
    rc, _, err = cli(f, "topic", "describe", "orders")
    assert rc == 0 and err == "", err


def test_produce_acks_all_via_follower_is_redirected():
    f = followers()[0]
    # min_insync_replicas is 2: wait until the followers reported the new partition
    wait_for("all three in sync on orders/0", lambda: isr_of(leader(), "orders", 0)[1] == "0,1,2")
    lines = [b"record %04d %s" % (i, b"x" * (i % 37)) for i in range(1000)]
    rc, out, err = cli(f, "produce", "-t", "orders", "-p", "0", "--acks", "all", "--batch", "50",
                       stdin=b"\n".join(lines) + b"\n")
    assert rc == 0, (rc, err)
    assert redirects(err) == [(f.addr, leader().addr)], err
    assert "produced 1000 records" in err and "0 failed" in err, err
    acked = sorted(tuple(map(int, re.fullmatch(rb"partition 0 offsets (\d+)-(\d+)", l).groups()))
                   for l in out.splitlines())
    assert acked[0][0] == 0 and acked[-1][1] == 999, acked
    assert all(b[0] == a[1] + 1 for a, b in zip(acked, acked[1:])), acked
    want = b"\n".join(lines) + b"\n"
    for n in cluster:  # every node serves every record, once, in order
        def consumed():
            rc, got, err = cli(n, "consume", "-t", "orders", "-p", "0", "-e")
            assert rc == 0, (n.addr, rc, err)
            return got == want
        wait_for("the 1000 records on %s" % n.addr, consumed)


def test_produce_acks_none_via_follower_is_redirected():
    f = followers()[1]
    lines = [b"quiet %d" % i for i in range(300)]
    rc, out, err = cli(f, "produce", "-t", "orders", "-p", "1", "--acks", "none", "--batch", "20",
                       stdin=b"\n".join(lines) + b"\n")
    assert rc == 0 and out == b"", (rc, out, err)
    assert redirects(err) == [(f.addr, leader().addr)], err
    assert "produced 300 records" in err, err
    rc, got, err = cli(leader(), "consume", "-t", "orders", "-p", "1", "-e")
    assert rc == 0 and got.splitlines() == lines, (rc, len(got.splitlines()), err)
    # sent to the leader, nothing is redirected
    rc, out, err = cli(leader(), "produce", "-t", "orders", "-p", "1", stdin=b"direct\n")
    assert rc == 0 and out == b"partition 1 offsets 300-300\n" and redirects(err) == [], (rc, out, err)
    # keyed records (client-side hashing reads the partition count from the follower)
    rc, out, err = cli(f, "produce", "-t", "orders", "-K", ":", stdin=b"k1:a\nk2:b\nk3:c\n")
    assert rc == 0 and "produced 3 records" in err and len(redirects(err)) == 1, (rc, err)


def test_produce_errors_after_redirect_are_the_leaders():
    f = followers()[0]
    rc, out, err = cli(f, "produce", "-t", "nosuchtopic", stdin=b"a\nb\n")
    assert rc == 3 and "NOT_FOUND" in err and len(redirects(err)) == 1, (rc, err)
    # nothing to send: still a clean run at the leader
    rc, out, err = cli(f, "produce", "-t", "orders", stdin=b"")
    assert rc == 0 and out == b"" and len(redirects(err)) == 1, (rc, err)


def test_topic_delete_via_follower_is_redirected():
    f = followers()[0]
    rc, out, err = cli(f, "topic", "create", "scratch")
    assert rc == 0 and len(redirects(err)) == 1, (rc, err)
    for n in cluster:
        wait_for("topic scratch on %s" % n.addr, lambda: "scratch" in topics_on(n))
    rc, out, err = cli(f, "topic", "delete", "scratch")
    assert rc == 0 and out == b"deleted topic scratch\n", (rc, out, err)
    assert redirects(err) == [(f.addr, leader().addr)], err
    for n in cluster:
        wait_for("topic scratch gone from %s" % n.addr, lambda: "scratch" not in topics_on(n))
    rc, _, err = cli(f, "topic", "delete", "scratch")
    assert rc == 3 and "NOT_FOUND" in err and len(redirects(err)) == 1, (rc, err)


def test_redirect_is_tried_once():
    """With the leader crashed, a follower still names it: one retry, then the leader's UNAVAILABLE.
    (A leader stopped with SIGTERM hands its role to a follower instead: test_failover.)"""
    crashed = leader()
    crashed.kill9()
    crashed.killed = True
    f = followers()[0]
    for args, stdin in ((["topic", "create", "late"], b""), (["topic", "delete", "orders"], b""),
                        (["produce", "-t", "orders", "-p", "0"], b"lost\n")):
        rc, out, err = cli(f, "--timeout", "3", *args, stdin=stdin)
        assert rc == 4 and "UNAVAILABLE" in err, (args, rc, err)
        assert redirects(err) == [(f.addr, leader().addr)], (args, err)
    # reads still work on the followers, and the refused records went nowhere
    rc, got, err = cli(f, "consume", "-t", "orders", "-p", "0", "-e")
    assert rc == 0 and got.startswith(b"record 0000 ") and b"lost" not in got, (rc, got[-200:], err)


def main():
    try:
        cluster.extend(start_cluster())
        run_tests([
            test_cluster_info,
            test_cluster_usage_and_unreachable,
            test_topic_create_via_follower_is_redirected,
            test_produce_acks_all_via_follower_is_redirected,
            test_produce_acks_none_via_follower_is_redirected,
            test_produce_errors_after_redirect_are_the_leaders,
            test_topic_delete_via_follower_is_redirected,
            test_redirect_is_tried_once,
        ])
    finally:
        bad = []
        for n in cluster:
            rc = n.stop()
            if rc not in (0, None) and not getattr(n, "killed", False):
                bad.append("%s exited %s:\n%s" % (n.addr, rc, n.read_log()[-4000:]))
            try:
                n.check_log()
            except RuntimeError as e:
                bad.append(str(e))
        if bad:
            print("\n".join(bad), flush=True)
            os._exit(1)


if __name__ == "__main__":
    main()
