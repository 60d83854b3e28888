"""Integration tests of consumer groups against the real streambusd, from
Python grpcio and the CLI: CommitOffsets / FetchOffsets, the internal
__consumer_offsets topic (compacted, created on the first commit), Consume
with a group resuming where it committed (clamped to the log), validation,
commits surviving a restart and kill -9, and `streambus consume -g` /
`streambus group describe|commit`.

Run by CTest (it_test_groups) with STREAMBUSD, STREAMBUS_CLI, SB_PY and
SB_TEST_TMP set.
"""
import os
import subprocess

import sbtest
from sbtest import Server, create_topic as create, expect_code, pb, produce, run_tests, server

import grpc

SC = grpc.StatusCode
CLI = os.environ.get("STREAMBUS_CLI", "")


def commit(s, group, topic, offsets, metadata=""):
    s.sb.CommitOffsets(pb.CommitOffsetsRequest(group=group, topic=topic, offsets=[
        pb.PartitionOffset(partition=p, offset=o, metadata=metadata) for p, o in offsets]))


def fetch(s, group, topic):
    return {o.partition: (o.offset, o.metadata)
            for o in s.sb.FetchOffsets(pb.FetchOffsetsRequest(group=group, topic=topic)).offsets}


def consume_values(s, topic, partition, group="", start=pb.START_EARLIEST):
    out = []
    for r in s.sb.Consume(pb.ConsumeRequest(topic=topic, partition=partition, start=start, group=group,
                                            stop=pb.STOP_AT_END)):
        out += [x.value for x in r.records]
    return out


def test_commit_fetch_and_resume():
    with server("groups-basic") as s:
        create(s, "t", partitions=2)
        produce(s, "t", [pb.Record(value=b"v%d" % i) for i in range(10)], partition=0)
        produce(s, "t", [pb.Record(value=b"w%d" % i) for i in range(5)], partition=1)
        assert fetch(s, "g", "t") == {}  # nothing committed yet (no offsets topic either)
        commit(s, "g", "t", [(0, 4)], metadata="m1")
        assert fetch(s, "g", "t") == {0: (4, "m1")}
        commit(s, "g", "t", [(0, 7), (1, 2)])
        assert fetch(s, "g", "t") == {0: (7, ""), 1: (2, "")}
        assert fetch(s, "other", "t") == {}
        # Consume with the group resumes at the commit; without a commit the start applies.
        assert consume_values(s, "t", 0, group="g") == [b"v7", b"v8", b"v9"]
        assert consume_values(s, "t", 1, group="g", start=pb.START_LATEST) == [b"w2", b"w3", b"w4"]
        assert consume_values(s, "t", 0, group="other") == [b"v%d" % i for i in range(10)]
        # An explicit start offset wins over the commit.
        r = list(s.sb.Consume(pb.ConsumeRequest(topic="t", partition=0, group="g", start=pb.START_OFFSET,
                                                start_offset=9, stop=pb.STOP_AT_END)))
        assert [x.value for m in r for x in m.records] == [b"v9"]
        # A commit past the end is clamped to the end when resuming.
        commit(s, "g", "t", [(0, 1000)])
        assert consume_values(s, "t", 0, group="g") == []
        # The offsets topic exists, compacted.
        d = s.admin.DescribeTopic(pb.DescribeTopicRequest(name="__consumer_offsets"))
        assert d.topic.config.cleanup_policy == "compact", d


def test_commits_are_validated():
    with server("groups-bad") as s:
        create(s, "t", partitions=2)
        expect_code(SC.INVALID_ARGUMENT, commit, s, "", "t", [(0, 1)])
        expect_code(SC.INVALID_ARGUMENT, commit, s, "g" * 256, "t", [(0, 1)])
        expect_code(SC.INVALID_ARGUMENT, commit, s, "g", "t", [])
        expect_code(SC.INVALID_ARGUMENT, commit, s, "g", "t", [(2, 1)])
        expect_code(SC.INVALID_ARGUMENT, commit, s, "g", "t", [(0, -1)])
        expect_code(SC.INVALID_ARGUMENT, commit, s, "g", "t", [(0, 1), (0, 2)])
        expect_code(SC.INVALID_ARGUMENT, commit, s, "g", "t", [(0, 1)], metadata="x" * 4097)
        expect_code(SC.NOT_FOUND, commit, s, "g", "nope", [(0, 1)])
        expect_code(SC.NOT_FOUND, fetch, s, "g", "nope")
        assert fetch(s, "g", "t") == {}


def test_commits_survive_restart_and_kill9():
    base = sbtest.scratch_dir("groups-durable")
    data = os.path.join(base, "data")
    with server("groups-durable", data_dir=data) as s:
        create(s, "t", partitions=3)
        for i in range(200):
            commit(s, "g%d" % (i % 7), "t", [(i % 3, i)])
        want = fetch(s, "g3", "t")
    with server("groups-durable", data_dir=data) as s:
        assert fetch(s, "g3", "t") == want
        commit(s, "g3", "t", [(0, 5000)])
    s = Server(name="groups-durable", data_dir=data).start()
    try:
        commit(s, "g3", "t", [(1, 6000)])  # acknowledged: durable
    finally:
        s.kill9()
    s.check_log()
    with server("groups-durable", data_dir=data) as s:
        got = fetch(s, "g3", "t")
        assert got[0] == (5000, "") and got[1] == (6000, ""), got
    sbtest.cleanup(base)


def test_cli_consume_with_a_group_commits_as_it_goes():
    if not CLI:
        print("  STREAMBUS_CLI not set: skipped")
        return
    with server("groups-cli") as s:
        create(s, "t", partitions=2)
        run = lambda *a, **kw: subprocess.run([CLI, "--server", s.addr] + list(a), capture_output=True,  # noqa: E731
                                               **kw)
        p = run("produce", "-t", "t", "-p", "0", input=b"".join(b"r%d\n" % i for i in range(20)))
        assert p.returncode == 0, p.stderr
        p = run("consume", "-t", "t", "-p", "0", "-g", "cg", "-c", "5")
        assert p.returncode == 0 and p.stdout == b"".join(b"r%d\n" % i for i in range(5)), (p.stdout, p.stderr)
        p = run("consume", "-t", "t", "-p", "0", "-g", "cg", "-e")
        assert p.stdout == b"".join(b"r%d\n" % i for i in range(5, 20)), (p.stdout, p.stderr)
        p = run("group", "describe", "-g", "cg", "-t", "t")
        assert p.returncode == 0, p.stderr
        rows = [line.split() for line in p.stdout.decode().splitlines()[1:]]
        assert rows[0][:4] == ["0", "20", "20", "0"] and rows[1][1] == "-", rows
        p = run("group", "commit", "-g", "cg", "-t", "t", "--metadata", "by hand", "0=18")
        assert p.returncode == 0, p.stderr
        p = run("consume", "-t", "t", "-p", "0", "-g", "cg", "-e")
        assert p.stdout == b"r18\nr19\n", p.stdout
        p = run("group", "commit", "-g", "cg", "-t", "t", "9=1")
        assert p.returncode == 6, (p.returncode, p.stderr)  # INVALID_ARGUMENT


if __name__ == "__main__":
    run_tests([test_commit_fetch_and_resume, test_commits_are_validated, test_commits_survive_restart_and_kill9,
               test_cli_consume_with_a_group_commits_as_it_goes])
