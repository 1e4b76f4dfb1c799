"""Registration on the secure xDS address happens under the caller's proven identity;
nobody registers, renews or removes a workload as another identity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
import pytest

from controlplane.registration_service import (
    DEREGISTER_METHOD,
    HEARTBEAT_METHOD,
    REGISTER_METHOD,
)
from meshlib._protos import registry_v1_pb2 as pb
from meshlib.security import obtain_certificate, read_claims
from meshlib.security.proof import proof_metadata
from tests.security.support import ca_root, create_token, secure_controlplane
from tests.support.processes import ControlPlaneProcess

Metadata = Sequence[tuple[str, str | bytes]]


class Caller:
    """Registry calls on the secure (root pinned) or plaintext port."""

    def __init__(self, cp: ControlPlaneProcess, root: bytes | None) -> None:
        if root is None:
            self.channel = grpc.insecure_channel(cp.xds_address)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
            self.channel = grpc.secure_channel(cp.secure_xds_address, credentials)

    def call(self, method: str, request: object, metadata: Metadata = ()) -> bytes:
        raw = request.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
        rpc = self.channel.unary_unary(method)
        return bytes(rpc(raw, metadata=tuple(metadata), timeout=15))

    def refused(self, method: str, request: object, metadata: Metadata = ()) -> tuple[str, str]:
        with pytest.raises(grpc.RpcError) as refused:
            self.call(method, request, metadata)
        return refused.value.code().name, str(refused.value.details())


def _registration(namespace: str = "", workload_id: str = "") -> pb.RegisterRequest:
    return pb.RegisterRequest(
        service="sessions", address="127.0.0.1", ports={50051: 50051}, namespace=namespace,
        id=workload_id,
    )  # fmt: skip


def _workloads(cp: ControlPlaneProcess) -> dict[str, dict[str, object]]:
    items = httpx.get(f"{cp.admin_url}/v1/workloads", timeout=10).json()["workloads"]
    return {item["id"]: item for item in items}


def test_registration_takes_the_identity_of_the_token_or_certificate(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        sessions = create_token(cp, "sessions", "conference")
        thief = create_token(cp, "thief", "conference")
        outsider = create_token(cp, "sessions", "elsewhere")
        root = ca_root(cp, read_claims(sessions).ca_fingerprint)
        secure, plain = Caller(cp, root), Caller(cp, None)
        as_sessions = [("authorization", f"Bearer {sessions}")]

        answer = pb.RegisterResponse.FromString(
            secure.call(REGISTER_METHOD, _registration(workload_id="s-1"), as_sessions)
        )
        registered = _workloads(cp)[answer.id]
        assert registered["identity"] == "spiffe://example.org/ns/conference/sa/sessions"
        assert registered["namespace"] == "conference"

        # No proof on the secure port, another namespace, someone else's id: refused.
        code, details = secure.refused(REGISTER_METHOD, _registration())
        assert code == "UNAUTHENTICATED" and "needs a join token" in details
        code, details = secure.refused(REGISTER_METHOD, _registration("default"), as_sessions)
        assert (code, details.split(":")[0]) == ("PERMISSION_DENIED", "namespace")
        for method, request in (
            (REGISTER_METHOD, _registration(workload_id="s-1")),
            (HEARTBEAT_METHOD, pb.HeartbeatRequest(id="s-1")),
            (DEREGISTER_METHOD, pb.DeregisterRequest(id="s-1")),
        ):
            for metadata in ([("authorization", f"Bearer {thief}")],
                             [("authorization", f"Bearer {outsider}")]):  # fmt: skip
                code, details = secure.refused(method, request, metadata)
                assert code == "PERMISSION_DENIED", (method, metadata)
                assert (
                    "s-1: registered by spiffe://example.org/ns/conference/sa/sessions" in details
                )
            # The plaintext port cannot touch it either.
            code, details = plain.refused(method, request)
            assert code == "PERMISSION_DENIED" and "not an unauthenticated caller" in details
        assert _workloads(cp)["s-1"]["identity"] == registered["identity"]

        # The owner's certificate proves the same identity: heartbeat and deregister work.
        certificate = obtain_certificate(sessions)
        heartbeat = pb.HeartbeatRequest(id="s-1")
        raw = heartbeat.SerializeToString(deterministic=True)
        secure.call(HEARTBEAT_METHOD, heartbeat, proof_metadata(certificate, HEARTBEAT_METHOD, raw))
        # A proof made for another request does not hold.
        stolen = proof_metadata(certificate, HEARTBEAT_METHOD, raw)
        code, details = secure.refused(DEREGISTER_METHOD, pb.DeregisterRequest(id="s-1"), stolen)
        assert code == "UNAUTHENTICATED" and "signature does not match" in details
        deregister = pb.DeregisterRequest(id="s-1")
        raw = deregister.SerializeToString(deterministic=True)
        secure.call(
            DEREGISTER_METHOD, deregister, proof_metadata(certificate, DEREGISTER_METHOD, raw)
        )
        assert "s-1" not in _workloads(cp)

        # Plaintext registration stays as it was: unauthenticated, no identity.
        answer = pb.RegisterResponse.FromString(plain.call(REGISTER_METHOD, _registration()))
        assert _workloads(cp)[answer.id]["identity"] is None


def test_plaintext_registration_can_be_turned_off(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path, "--no-plaintext-registration") as cp:
        code, details = Caller(cp, None).refused(REGISTER_METHOD, _registration())
        token = create_token(cp, "sessions")
        secure = Caller(cp, ca_root(cp, read_claims(token).ca_fingerprint))
        secure.call(REGISTER_METHOD, _registration(), [("authorization", f"Bearer {token}")])
    assert code == "FAILED_PRECONDITION"
    assert "registration on the plaintext xDS address is turned off" in details
