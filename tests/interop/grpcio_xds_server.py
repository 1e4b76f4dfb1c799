"""Run as a subprocess: grpcio's own xDS server (gRFC A36) serving ``/test.Echo/*``.

Usage: python grpcio_xds_server.py PORT (bootstrap from GRPC_XDS_BOOTSTRAP, with
``server_listener_resource_name_template``). Credentials are
``xds_server_credentials`` falling back to insecure, so the inbound listener's
DownstreamTlsContext decides plaintext or mTLS. Every method answers its own name
and the caller's SPIFFE ID as grpc reports it. Prints "serving" and runs until
stdin closes.
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc


def _handler(method: str) -> grpc.RpcMethodHandler:
    def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
        peer = context.auth_context().get("peer_spiffe_id") or [b"-"]
        return f"{method} {peer[0].decode()}".encode()

    return grpc.unary_unary_rpc_method_handler(answer)


class _Echo(grpc.GenericRpcHandler):
    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = str(handler_call_details.method)
        return _handler(method) if method.startswith("/test.Echo/") else None


def main() -> None:
    port = int(sys.argv[1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((_Echo(),))
    credentials = grpc.xds_server_credentials(grpc.insecure_server_credentials())
    server.add_secure_port(f"127.0.0.1:{port}", credentials)
    server.start()
    print("serving", flush=True)
    sys.stdin.read()
    server.stop(None)


if __name__ == "__main__":
    main()
