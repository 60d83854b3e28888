"""Integration tests of gRPC server reflection (grpc.reflection.v1 and
v1alpha ServerReflectionInfo) against the real streambusd, from Debian's
Python grpcio.

Covers: list_services; file_containing_symbol for services, methods,
messages, enums, nested enums, enum values and every symbol of the build's
descriptor set; file_by_filename returning the file and its transitive
dependencies byte-for-byte as embedded; NOT_FOUND error responses that leave
the stream usable; extension queries; valid_host/original_request echo;
pipelined requests and concurrent streams; a malformed request; a client
cancelling mid-stream; SIGTERM with a reflection stream open; and a generic
client that builds ListTopicsRequest from the returned descriptors alone and
calls Admin.ListTopics with it.

The reflection messages are generated at run time (protoc --python_out) from
/usr/share/grpc-proto, renamed reflection_v1.proto / reflection_v1alpha.proto
so neither shadows the other nor the grpc package.

Run by CTest (it_test_reflection) with STREAMBUSD, SB_PY and SB_TEST_TMP set.
"""
import importlib
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import sbtest
from sbtest import Server, pb, run_tests

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO_DIR = "/usr/share/grpc-proto/grpc/reflection"
VERSIONS = ("v1", "v1alpha")
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
EXPECTED_SERVICES = {
    "streambus.v1.StreamBus", "streambus.v1.Admin", "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
}
R = {}  # version -> generated reflection module
SCRATCH = []


def load_reflection_modules():
    protoc = shutil.which("protoc")
    if not protoc or not os.path.exists(os.path.join(PROTO_DIR, "v1", "reflection.proto")):
        print("SKIP: protoc or /usr/share/grpc-proto reflection protos missing")
        sys.exit(sbtest.SKIP)
    out = sbtest.scratch_dir("reflection-pb")
    SCRATCH.append(out)
    for v in VERSIONS:
        name = "reflection_%s" % v
        shutil.copy(os.path.join(PROTO_DIR, v, "reflection.proto"), os.path.join(out, name + ".proto"))
        subprocess.run([protoc, "--python_out=" + out, "-I" + out, name + ".proto"], check=True)
    sys.path.insert(0, out)
    for v in VERSIONS:
        R[v] = importlib.import_module("reflection_%s_pb2" % v)


def build_descriptor_set():
    """The raw FileDescriptorSet the build embedded (gen/descriptor_set.bin)."""
    path = os.path.join(os.path.dirname(os.environ["SB_PY"]), "gen", "descriptor_set.bin")
    with open(path, "rb") as f:
        return f.read()


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def raw_files(set_bytes):
    """The bytes of each FileDescriptorSet.file (field 1), exactly as stored."""
    out, i = [], 0
    while i < len(set_bytes):
        tag, i = varint(set_bytes, i)
        assert tag == (1 << 3) | 2, "unexpected field in FileDescriptorSet: tag %d" % tag
        n, i = varint(set_bytes, i)
        out.append(set_bytes[i:i + n])
        i += n
    return out


def symbols_of(fdp):
    """Every fully-qualified symbol a file declares."""
    pkg = fdp.package + "." if fdp.package else ""
    out = []

    def enum(e, scope):
        out.append(scope + e.name)
        out.extend(scope + v.name for v in e.value)  # values are siblings of the enum

    def message(m, scope):
        full = scope + m.name
        out.append(full)
        out.extend(full + "." + f.name for f in list(m.field) + list(m.extension) + list(m.oneof_decl))
        for n in m.nested_type:
            message(n, full + ".")
        for e in m.enum_type:
            enum(e, full + ".")

    for m in fdp.message_type:
        message(m, pkg)
    for e in fdp.enum_type:
        enum(e, pkg)
    for s in fdp.service:
        out.append(pkg + s.name)
        out.extend(pkg + s.name + "." + m.name for m in s.method)
    return out


# ---------------------------------------------------------------- helpers

class Reflector:
    """ServerReflectionInfo of one version on a channel."""

    def __init__(self, channel, version):
        self.v = version
        self.m = R[version]
        self.stub = channel.stream_stream(
            "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
            request_serializer=self.m.ServerReflectionRequest.SerializeToString,
            response_deserializer=self.m.ServerReflectionResponse.FromString)

    def req(self, **kw):
        kw.setdefault("host", "refl-test-host")
        return self.m.ServerReflectionRequest(**kw)

    def ask(self, reqs, timeout=30):
        """Sends reqs on ONE stream, half-closes; returns the responses, which
        must number one per request and echo each request in order; the stream
        must end with OK."""
        it = self.stub(iter(reqs), timeout=timeout)
        out = list(it)
        assert it.code() == grpc.StatusCode.OK, (it.code(), it.details())
        assert len(out) == len(reqs), "%d requests, %d responses" % (len(reqs), len(out))
        for q, r in zip(reqs, out):
            assert r.original_request == q, "response echoes %r, not %r" % (r.original_request, q)
            assert r.valid_host == q.host, (r.valid_host, q.host)
        return out


def files_of(resp):
    assert resp.WhichOneof("message_response") == "file_descriptor_response", resp
    return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in resp.file_descriptor_response.file_descriptor_proto]


def expect_error(resp, code, contains=None):
    assert resp.WhichOneof("message_response") == "error_response", resp
    assert resp.error_response.error_code == code, resp.error_response
    assert resp.error_response.error_message, "error without a message"
    if contains:
        assert contains in resp.error_response.error_message, resp.error_response.error_message


def with_channel(server, fn):
    ch = grpc.insecure_channel(server.addr)
    try:
        return fn(ch)
    finally:
        ch.close()


def message_class(desc):
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


# ---------------------------------------------------------------- tests

def test_list_services_names_every_service():
    with Server(name="refl") as s:
        for v in VERSIONS:
            r = Reflector(s.channel, v)
            (resp,) = r.ask([r.req(list_services="*")])
            assert resp.WhichOneof("message_response") == "list_services_response", resp
            names = [x.name for x in resp.list_services_response.service]
            assert EXPECTED_SERVICES <= set(names), "%s: missing %s" % (v, EXPECTED_SERVICES - set(names))
            assert len(names) == len(set(names)), "duplicates in %s" % names


def test_symbols_resolve_to_their_files():
    cases = [  # symbol, file it must come first in, check
        ("streambus.v1.StreamBus", "streambus/v1/streambus.proto",
         lambda f: {"Produce", "Consume", "Fetch"} <= {m.name for m in [x for x in f.service if x.name == "StreamBus"][0].method}),
        ("streambus.v1.ConsumeRequest", "streambus/v1/streambus.proto",
         lambda f: "ConsumeRequest" in [m.name for m in f.message_type]),
        ("streambus.v1.Admin.CreateTopic", "streambus/v1/streambus.proto",
         lambda f: "CreateTopic" in [m.name for x in f.service if x.name == "Admin" for m in x.method]),
        ("streambus.v1.Admin", "streambus/v1/streambus.proto", lambda f: True),
        ("streambus.v1.Acks", "streambus/v1/streambus.proto", lambda f: "Acks" in [e.name for e in f.enum_type]),
        ("streambus.v1.ACKS_NONE", "streambus/v1/streambus.proto", lambda f: True),
        ("streambus.v1.CreateTopicRequest.name", "streambus/v1/streambus.proto", lambda f: True),
        ("grpc.health.v1.Health.Watch", "grpc/health/v1/health.proto", lambda f: True),
        ("grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto",
         lambda f: "ServingStatus" in [e.name for m in f.message_type for e in m.enum_type]),
        ("grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto", lambda f: True),
    ]
    with Server(name="refl") as s:
        for v in VERSIONS:
            r = Reflector(s.channel, v)
            resps = r.ask([r.req(file_containing_symbol=sym) for sym, _, _ in cases])  # one stream
            for (sym, fname, check), resp in zip(cases, resps):
                files = files_of(resp)
                assert files[0].name == fname, "%s %s: first file %s" % (v, sym, files[0].name)
                assert check(files[0]), "%s %s: check failed on %s" % (v, sym, files[0])


def test_every_build_symbol_and_file_byte_exact():
    """For every file of the embedded set: file_by_filename returns it first,
    byte-for-byte, then exactly its transitive dependencies, each once; every
    symbol it declares leads to it."""
    raws = raw_files(build_descriptor_set())
    assert raws, "empty descriptor set"
    fdps = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in raws]
    by_name = {f.name: (f, b) for f, b in zip(fdps, raws)}

    def closure(name):
        seen, todo = set(), [name]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(by_name[n][0].dependency)
        return seen

    with Server(name="refl") as s:
        r = Reflector(s.channel, "v1")
        resps = r.ask([r.req(file_by_filename=f.name) for f in fdps])
        for f, resp in zip(fdps, resps):
            got = list(resp.file_descriptor_response.file_descriptor_proto)
            files_of(resp)
            assert got[0] == by_name[f.name][1], "%s: bytes differ from the embedded set" % f.name
            names = [descriptor_pb2.FileDescriptorProto.FromString(b).name for b in got]
            assert len(names) == len(set(names)), "%s: duplicates %s" % (f.name, names)
            assert set(names) == closure(f.name), "%s: %s != closure %s" % (f.name, names, closure(f.name))
            for b in got:
                n = descriptor_pb2.FileDescriptorProto.FromString(b).name
                assert b == by_name[n][1], "%s: dependency %s bytes differ" % (f.name, n)
        syms = [(sym, f.name) for f in fdps for sym in symbols_of(f)]
        assert len(syms) > 50, syms
        resps = r.ask([r.req(file_containing_symbol=sym) for sym, _ in syms])
        for (sym, fname), resp in zip(syms, resps):
            assert files_of(resp)[0].name == fname, "%s: got %s" % (sym, files_of(resp)[0].name)


def test_unknown_names_are_not_found_and_the_stream_goes_on():
    with Server(name="refl") as s:
        for v in VERSIONS:
            r = Reflector(s.channel, v)
            ext = r.m.ExtensionRequest(containing_type="streambus.v1.ConsumeRequest", extension_number=100)
            reqs = [
                r.req(file_containing_symbol="streambus.v1.NoSuchThing"),
                r.req(file_containing_symbol="streambus.v1.StreamBus"),
                r.req(file_containing_symbol="streambus.v1.StreamBus.NoSuchMethod"),
                r.req(file_containing_symbol=""),
                r.req(file_by_filename="no/such/file.proto"),
                r.req(file_containing_extension=ext),
                r.req(all_extension_numbers_of_type="streambus.v1.ConsumeRequest"),
                r.req(all_extension_numbers_of_type="streambus.v1.NoSuchType"),
                r.req(all_extension_numbers_of_type="streambus.v1.StreamBus"),
                r.req(host="", list_services=""),
            ]
            resps = r.ask(reqs)
            expect_error(resps[0], NOT_FOUND, "streambus.v1.NoSuchThing")
            assert files_of(resps[1])[0].name == "streambus/v1/streambus.proto"
            expect_error(resps[2], NOT_FOUND, "NoSuchMethod")
            expect_error(resps[3], NOT_FOUND)
            expect_error(resps[4], NOT_FOUND, "no/such/file.proto")
            expect_error(resps[5], NOT_FOUND)
            assert resps[6].WhichOneof("message_response") == "all_extension_numbers_response", resps[6]
            assert resps[6].all_extension_numbers_response.base_type_name == "streambus.v1.ConsumeRequest"
            assert list(resps[6].all_extension_numbers_response.extension_number) == []
            expect_error(resps[7], NOT_FOUND, "NoSuchType")
            expect_error(resps[8], NOT_FOUND)  # a service is not a message type
            assert resps[9].WhichOneof("message_response") == "list_services_response"


def test_pipelined_requests_and_concurrent_streams():
    """Hundreds of requests written without waiting (more than the server's
    per-stream queue), on 8 streams at once: one answer each, in order."""
    with Server(name="refl") as s:
        errors = []

        def one(i):
            try:
                r = Reflector(s.channel, VERSIONS[i % 2])
                reqs = []
                for k in range(150):
                    reqs.append(r.req(host="h%d-%d" % (i, k), **[
                        {"list_services": ""},
                        {"file_containing_symbol": "streambus.v1.Admin.ListTopics"},
                        {"file_containing_symbol": "nope.%d" % k},
                        {"file_by_filename": "grpc/health/v1/health.proto"}][k % 4]))
                resps = r.ask(reqs, timeout=60)
                for k, resp in enumerate(resps):
                    want = ["list_services_response", "file_descriptor_response", "error_response",
                            "file_descriptor_response"][k % 4]
                    assert resp.WhichOneof("message_response") == want, (k, resp)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors


def test_empty_stream_ends_ok():
    with Server(name="refl") as s:
        for v in VERSIONS:
            Reflector(s.channel, v).ask([])


def test_malformed_request_gets_invalid_argument():
    with Server(name="refl") as s:
        m = R["v1"]
        stub = s.channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                       request_serializer=lambda b: b,
                                       response_deserializer=m.ServerReflectionResponse.FromString)
        good = m.ServerReflectionRequest(list_services="")
        it = stub(iter([b"\x0a\xff\xff", good.SerializeToString()]), timeout=10)
        resps = list(it)
        assert it.code() == grpc.StatusCode.OK, it.code()
        assert len(resps) == 2, resps
        expect_error(resps[0], INVALID_ARGUMENT, "malformed")
        assert resps[1].WhichOneof("message_response") == "list_services_response"


def blocking_stream(r, first):
    """Starts a stream that sends `first` then waits; returns (iterator, queue)."""
    q = queue.Queue()
    q.put(first)

    def gen():
        while True:
            x = q.get()
            if x is None:
                return
            yield x

    return r.stub(gen(), timeout=60), q


def test_client_cancel_mid_stream():
    with Server(name="refl") as s:
        for v in VERSIONS:
            r = Reflector(s.channel, v)
            it, q = blocking_stream(r, r.req(list_services=""))
            assert next(it).WhichOneof("message_response") == "list_services_response"
            it.cancel()
            q.put(None)
            assert it.code() == grpc.StatusCode.CANCELLED, it.code()
        # the server is unharmed
        r = Reflector(s.channel, "v1")
        r.ask([r.req(file_containing_symbol="streambus.v1.StreamBus")])


def test_sigterm_with_an_open_stream():
    """A reflection stream left open does not stop a graceful shutdown: the
    server exits 0 (Server.__exit__ checks it and the sanitizer) within the
    grace period plus a margin, and the stream ends non-OK."""
    grace_ms = 1000
    with Server(name="refl", args=["--shutdown-grace-ms", str(grace_ms)]) as s:
        ch = grpc.insecure_channel(s.addr)  # not the harness's: stop() closes that one first
        try:
            r = Reflector(ch, "v1")
            it, q = blocking_stream(r, r.req(list_services=""))
            assert next(it).WhichOneof("message_response") == "list_services_response"
            t0 = time.time()
            rc = s.stop()
            took = time.time() - t0
            q.put(None)
            assert rc == 0, rc
            assert took < grace_ms / 1000 + 5, "shutdown took %.1fs" % took
            try:
                rest = list(it)
                raise AssertionError("stream ended OK after SIGTERM: %r" % rest)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e.code()
        finally:
            ch.close()


def test_generic_client_calls_list_topics_from_reflected_descriptors():
    """What grpcurl does: learn the Admin service from reflection alone, build
    the request class dynamically, call ListTopics with it."""
    with Server(name="refl") as s:
        s.admin.CreateTopic(pb.CreateTopicRequest(name="reflected-topic", partitions=2))
        for v in VERSIONS:
            def call(ch, v=v):
                r = Reflector(ch, v)
                (lst,) = r.ask([r.req(list_services="")])
                assert "streambus.v1.Admin" in [x.name for x in lst.list_services_response.service]
                (resp,) = r.ask([r.req(file_containing_symbol="streambus.v1.Admin")])
                fdps = {f.name: f for f in files_of(resp)}
                pool = descriptor_pool.DescriptorPool()  # private: nothing from the generated stubs

                def add(name):
                    if name in fdps:
                        f = fdps.pop(name)
                        for d in f.dependency:
                            add(d)
                        pool.Add(f)

                for n in list(fdps):
                    add(n)
                method = pool.FindServiceByName("streambus.v1.Admin").methods_by_name["ListTopics"]
                req_cls, resp_cls = message_class(method.input_type), message_class(method.output_type)
                assert method.input_type.full_name == "streambus.v1.ListTopicsRequest"
                rpc = ch.unary_unary("/streambus.v1.Admin/ListTopics",
                                     request_serializer=req_cls.SerializeToString,
                                     response_deserializer=resp_cls.FromString)
                out = rpc(req_cls(), timeout=10)
                topics = {t.name: t.partitions for t in out.topics}
                assert topics.get("reflected-topic") == 2, topics
            with_channel(s, call)


def test_reflection_protos_follow_the_embedded_set():
    """The reflection services are always listed; they are describable when
    the build embeds their protos (see the report on the CMake change), and
    NOT_FOUND otherwise, never anything in between."""
    embedded = {descriptor_pb2.FileDescriptorProto.FromString(b).name for b in raw_files(build_descriptor_set())}
    with Server(name="refl") as s:
        for v in VERSIONS:
            r = Reflector(s.channel, v)
            sym = "grpc.reflection.%s.ServerReflection" % v
            (resp,) = r.ask([r.req(file_containing_symbol=sym)])
            if "grpc/reflection/%s/reflection.proto" % v in embedded:
                f = files_of(resp)[0]
                assert f.name == "grpc/reflection/%s/reflection.proto" % v, f.name
                assert [m.name for x in f.service for m in x.method] == ["ServerReflectionInfo"]
            else:
                print("NOTE: %s proto not in the embedded descriptor set: NOT_FOUND expected" % v)
                expect_error(resp, NOT_FOUND, sym)


if __name__ == "__main__":
    load_reflection_modules()
    try:
        run_tests([
            test_list_services_names_every_service,
            test_symbols_resolve_to_their_files,
            test_every_build_symbol_and_file_byte_exact,
            test_unknown_names_are_not_found_and_the_stream_goes_on,
            test_pipelined_requests_and_concurrent_streams,
            test_empty_stream_ends_ok,
            test_malformed_request_gets_invalid_argument,
            test_client_cancel_mid_stream,
            test_sigterm_with_an_open_stream,
            test_generic_client_calls_list_topics_from_reflected_descriptors,
            test_reflection_protos_follow_the_embedded_set,
        ])
    finally:
        for d in SCRATCH:
            sbtest.cleanup(d)
