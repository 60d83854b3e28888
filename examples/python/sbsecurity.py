"""sbsecurity.py - the security options every example takes, and the channel
they make (docs/SECURITY.md).

    --tls-ca FILE            use TLS; verify the server against this CA bundle (PEM)
    --tls-cert/--tls-key F   client certificate and key, for servers that require one (mTLS)
    --tls-server-name NAME   name to check in the server's certificate (default: the host)
    --token TOKEN            bearer token (default $STREAMBUS_TOKEN)

Over TLS the token travels as gRPC call credentials; over a plaintext channel
(a server on loopback) an interceptor adds the same `authorization` metadata.
"""
import collections
import os

import grpc


def add_args(ap):
    g = ap.add_argument_group("security")
    g.add_argument("--tls-ca", help="PEM CA bundle: use TLS and verify the server against it")
    g.add_argument("--tls-cert", help="PEM client certificate (mTLS)")
    g.add_argument("--tls-key", help="PEM private key of --tls-cert")
    g.add_argument("--tls-server-name", help="name the server's certificate must carry (default: the host)")
    g.add_argument("--token", default=os.environ.get("STREAMBUS_TOKEN"),
                   help="bearer token (default $STREAMBUS_TOKEN)")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call (plaintext channels)."""

    def __init__(self, token):
        self.md = ("authorization", "Bearer " + token)

    def _details(self, d):
        md = list(d.metadata or ()) + [self.md]
        return _Details(d.method, d.timeout, md, d.credentials, getattr(d, "wait_for_ready", None),
                        getattr(d, "compression", None))

    def intercept_unary_unary(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_unary_stream(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_stream_unary(self, cont, d, reqs):
        return cont(self._details(d), reqs)

    def intercept_stream_stream(self, cont, d, reqs):
        return cont(self._details(d), reqs)


def channel(args, options=()):
    """A channel to args.server with the security options applied."""
    options = list(options)
    if args.tls_ca:
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read(args.tls_ca),
            private_key=_read(args.tls_key) if args.tls_key else None,
            certificate_chain=_read(args.tls_cert) if args.tls_cert else None)
        if args.token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(args.token))
        if args.tls_server_name:
            options.append(("grpc.ssl_target_name_override", args.tls_server_name))
        return grpc.secure_channel(args.server, creds, options=options)
    ch = grpc.insecure_channel(args.server, options=options)
    if args.token:
        ch = grpc.intercept_channel(ch, _Bearer(args.token))
    return ch
