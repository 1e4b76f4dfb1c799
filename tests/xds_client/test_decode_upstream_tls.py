"""CDS UpstreamTlsContext as meshlib decodes it: what the control plane sends for auto
mTLS and ISTIO_MUTUAL (current and deprecated provider fields) is accepted, what meshlib
does not enforce is refused naming the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from controlplane.translate import translate
from meshlib.errors import XdsValidationError
from meshlib.xds_client.decode_cluster import decode_cluster
from meshlib.xds_client.resources import HeaderMatchKind
from meshlib.xds_client.upstream_tls import SanMatcher, UpstreamTls
from tests.controlplane.test_security_translate import (
    PROXYLESS,
    SESSIONS_ID,
    cluster,
    load,
    strict,
)


def strict_cluster(tmp_path: Path) -> cluster_pb2.Cluster:
    return cluster(translate(load(tmp_path, strict()), (), PROXYLESS))


def edit(found: cluster_pb2.Cluster, change: Callable[[tls_pb2.UpstreamTlsContext], Any]) -> Any:
    context = tls_pb2.UpstreamTlsContext()
    assert found.transport_socket.typed_config.Unpack(context)
    change(context)
    found.transport_socket.typed_config.Pack(context)
    return found


def test_control_plane_auto_mtls_cluster_is_accepted(tmp_path: Path) -> None:
    decoded = decode_cluster(strict_cluster(tmp_path))
    assert decoded.tls == UpstreamTls(
        root_provider="default",
        identity_provider="default",
        san_matchers=(SanMatcher(HeaderMatchKind.EXACT, SESSIONS_ID),),
    )
    assert decoded.tls.accepts(SESSIONS_ID)
    assert not decoded.tls.accepts("spiffe://cluster.local/ns/conference/sa/other")


def test_istio_mutual_destination_rule_is_accepted(tmp_path: Path) -> None:
    rule = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: s, namespace: conference}\nspec:\n  host: sessions\n"
        "  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n"
    )
    found = cluster(translate(load(tmp_path, rule), (), PROXYLESS))
    tls = decode_cluster(found).tls
    assert tls is not None and tls.present_certificate
    assert [str(m) for m in tls.san_matchers] == [SESSIONS_ID]


def _only_deprecated(context: tls_pb2.UpstreamTlsContext) -> None:
    common = context.common_tls_context
    common.ClearField("tls_certificate_provider_instance")
    common.combined_validation_context.default_validation_context.ClearField(
        "ca_certificate_provider_instance"
    )


def _only_current(context: tls_pb2.UpstreamTlsContext) -> None:
    common = context.common_tls_context
    common.ClearField("tls_certificate_certificate_provider_instance")
    common.combined_validation_context.ClearField(
        "validation_context_certificate_provider_instance"
    )


@pytest.mark.parametrize("change", [_only_deprecated, _only_current], ids=["deprecated", "current"])
def test_either_provider_field_generation_is_enough(
    tmp_path: Path, change: Callable[[tls_pb2.UpstreamTlsContext], None]
) -> None:
    tls = decode_cluster(edit(strict_cluster(tmp_path), change)).tls
    assert tls is not None
    assert (tls.root_provider, tls.identity_provider) == ("default", "default")


def _validation(context: tls_pb2.UpstreamTlsContext) -> Any:
    return context.common_tls_context.combined_validation_context.default_validation_context


REFUSED: list[tuple[str, Callable[[tls_pb2.UpstreamTlsContext], Any], str]] = [
    (
        "files",
        lambda c: c.common_tls_context.tls_certificates.add().certificate_chain.SetInParent(),
        "common_tls_context.tls_certificates: not supported by meshlib",
    ),
    (
        "trusted ca",
        lambda c: setattr(_validation(c).trusted_ca, "filename", "/etc/ca.pem"),
        "default_validation_context.trusted_ca: not supported by meshlib",
    ),
    (
        "spki pinning",
        lambda c: _validation(c).verify_certificate_spki.append("x"),
        "verify_certificate_spki: not supported by meshlib (SPKI pinning)",
    ),
    (
        "no root",
        lambda c: (_only_current(c), _validation(c).ClearField("ca_certificate_provider_instance")),
        "ca_certificate_provider_instance: required (the mesh root)",
    ),
    (
        "dns typed san",
        lambda c: setattr(_validation(c).match_typed_subject_alt_names.add(), "san_type", 2),
        "match_typed_subject_alt_names[0].san_type: DNS is not supported",
    ),
    (
        "empty instance name",
        lambda c: c.common_tls_context.tls_certificate_provider_instance.ClearField(
            "instance_name"
        ),
        "common_tls_context.tls_certificate_provider_instance.instance_name: required",
    ),
    (
        "sds",
        lambda c: c.common_tls_context.tls_certificate_sds_secret_configs.add(name="x"),
        "tls_certificate_sds_secret_configs: not supported by meshlib (SDS)",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_unsupported_tls_is_refused_naming_the_field(
    tmp_path: Path, change: Callable[[tls_pb2.UpstreamTlsContext], Any], expected: str
) -> None:
    with pytest.raises(
        XdsValidationError, match=re.escape('Cluster "outbound|50051||sessions"')
    ) as info:
        decode_cluster(edit(strict_cluster(tmp_path), change))
    assert expected in str(info.value)


def test_a_socket_that_is_not_tls_is_refused(tmp_path: Path) -> None:
    found = strict_cluster(tmp_path)
    found.transport_socket.typed_config.Pack(cluster_pb2.Cluster())
    with pytest.raises(
        XdsValidationError, match=r"expected type\.googleapis\.com/envoy\.extensions"
    ):
        decode_cluster(found)


def test_no_sans_accept_any_identity(tmp_path: Path) -> None:
    found = edit(
        strict_cluster(tmp_path), lambda c: _validation(c).ClearField("match_subject_alt_names")
    )
    tls = decode_cluster(found).tls
    assert tls is not None and tls.accepts("spiffe://x/ns/y/sa/z")
    assert "any identity" in tls.expected()
