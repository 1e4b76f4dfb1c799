"""A plaintext call straight to a sessions instance, past the mesh: STRICT mTLS refuses it.

run.py makes it once to show the port takes mesh certificates only: a caller with no
certificate gets no answer (its handshake fails), whoever it claims to be.
"""

from __future__ import annotations

import grpc
from gen.conference.sessions.v1 import sessions_pb2, sessions_pb2_grpc

PROBE_TIMEOUT_S = 5.0


def plaintext_call(port: int) -> str | None:
    """None when the instance answered a plaintext GetSession; else how it was refused."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = sessions_pb2_grpc.SessionsStub(channel)
        try:
            stub.GetSession(
                sessions_pb2.GetSessionRequest(session_id="s-1"), timeout=PROBE_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call):
                return f"{exc.code().name} (no TLS handshake without a mesh certificate)"
            return str(exc)
    return None
