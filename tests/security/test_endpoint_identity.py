"""The identity an endpoint must present: one unambiguous DNS name per SPIFFE ID (what
grpcio checks), carried per endpoint in EDS from the control plane to meshlib."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlplane.translate import translate
from controlplane.translate.typeurls import ENDPOINTS_TYPE_URL
from meshlib.errors import CertificateRequestError, XdsValidationError
from meshlib.security.identity import SpiffeId
from meshlib.security.keeper import CertificateKeeper
from meshlib.transport.endpoint_tls import UNACCEPTED_PEER_NAME, expected_peer_name
from meshlib.xds_client.decode_endpoints import decode_cluster_load_assignment
from meshlib.xds_client.resources import Endpoint, HeaderMatchKind
from meshlib.xds_client.upstream_tls import SanMatcher, UpstreamTls
from tests.controlplane.test_security_translate import PROXYLESS, SESSIONS_ID, load, strict
from tests.security.support import create_token, secure_controlplane


def test_dns_names_are_unambiguous_and_valid() -> None:
    one = SpiffeId("example.org", "b.c", "a")
    other = SpiffeId("example.org", "c", "a.b")
    assert one.dns_name != other.dns_name  # the same readable part, different identities
    assert re.fullmatch(r"a\.b\.c\.[0-9a-f]{24}\.spiffe\.invalid", one.dns_name)
    assert SpiffeId("other.org", "b.c", "a").dns_name != one.dns_name
    long = SpiffeId("example.org", "n" * 200, "s" * 200)
    assert len(long.dns_name) <= 253 and long.dns_name.endswith(".spiffe.invalid")


def test_eds_carries_each_endpoints_identity(tmp_path: Path) -> None:
    assignment = translate(load(tmp_path, strict()), (), PROXYLESS)[ENDPOINTS_TYPE_URL][
        "outbound|50051||sessions"
    ]
    decoded = decode_cluster_load_assignment(assignment)
    assert [e.identity for loc in decoded.localities for e in loc.endpoints] == [SESSIONS_ID]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 'filter_metadata["meshlib"].identity: must be a string'),
        ("spiffe://x/not-an-identity", 'filter_metadata["meshlib"].identity: identity'),
    ],
)
def test_a_bad_endpoint_identity_is_refused_naming_it(
    tmp_path: Path, value: object, expected: str
) -> None:
    assignment = translate(load(tmp_path, strict()), (), PROXYLESS)[ENDPOINTS_TYPE_URL][
        "outbound|50051||sessions"
    ]
    metadata = assignment.endpoints[0].lb_endpoints[0].metadata.filter_metadata["meshlib"]
    metadata.update({"identity": value})
    with pytest.raises(XdsValidationError, match=re.escape(expected)):
        decode_cluster_load_assignment(assignment)


def test_a_control_plane_that_is_not_the_tokens_is_refused(tmp_path: Path) -> None:
    with (
        secure_controlplane(tmp_path, name="one") as one,
        secure_controlplane(tmp_path, name="two") as two,
    ):
        token = create_token(one, "app")
        with pytest.raises(
            CertificateRequestError,
            match=f"control plane {two.secure_xds_address}: does not present the CA the token",
        ):
            CertificateKeeper.from_token(token, address=two.secure_xds_address)


ECHO = SpiffeId.parse("spiffe://example.org/ns/conference/sa/echo")


def _tls(*sans: str) -> UpstreamTls:
    return UpstreamTls(
        "default", "default", tuple(SanMatcher(HeaderMatchKind.EXACT, s) for s in sans)
    )


@pytest.mark.parametrize(
    ("identity", "tls", "expected"),
    [
        (str(ECHO), _tls(str(ECHO)), ECHO.dns_name),  # EDS names it, the cluster accepts it
        ("", _tls(str(ECHO)), ECHO.dns_name),  # unknown, but the cluster accepts only one
        ("", _tls(str(ECHO), "spiffe://example.org/ns/conference/sa/b"), UNACCEPTED_PEER_NAME),
        ("spiffe://example.org/ns/conference/sa/b", _tls(str(ECHO)), UNACCEPTED_PEER_NAME),
    ],
    ids=["accepted", "single-expected", "unknown-of-several", "not-accepted"],
)
def test_grpc_expects_the_accepted_identitys_dns_name(
    identity: str, tls: UpstreamTls, expected: str
) -> None:
    endpoint = Endpoint(address="127.0.0.1", port=1, identity=identity)
    assert expected_peer_name(endpoint, tls, "outbound|50051||echo") == expected
