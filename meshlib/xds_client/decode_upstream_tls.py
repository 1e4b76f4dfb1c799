"""CDS ``transport_socket`` -> :class:`UpstreamTls`, validated as gRFC A29 says.

Accepted: an ``UpstreamTlsContext`` whose ``CommonTlsContext`` names certificate
provider instances, current fields (``tls_certificate_provider_instance``,
``ca_certificate_provider_instance`` in ``validation_context`` or
``combined_validation_context.default_validation_context``) or deprecated ones
(``tls_certificate_certificate_provider_instance``,
``validation_context_certificate_provider_instance``), with
``match_subject_alt_names`` (or URI-typed ``match_typed_subject_alt_names``).
Refused, each naming the field: certificates or CAs from files, SDS, and every
check meshlib does not perform (SPKI / hash pinning, CRLs, SCTs, custom
validators, expired or untrusted chains). ``alpn_protocols`` is ignored (gRPC
does the same); ``sni`` is kept.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from meshlib.xds_client._decode_util import DecodeContext, unpack_any
from meshlib.xds_client.decode_matchers import string_matcher
from meshlib.xds_client.upstream_tls import SanMatcher, UpstreamTls

_COMMON_REFUSED = {
    "tls_params": "TLS parameters",
    "tls_certificates": "certificates from files or inline (meshlib presents the workload "
    "certificate: use ISTIO_MUTUAL)",
    "tls_certificate_sds_secret_configs": "SDS",
    "custom_tls_certificate_selector": "custom certificate selectors",
    "tls_certificate_certificate_provider": "certificate provider plugins (use instances)",
    "validation_context_sds_secret_config": "SDS",
    "validation_context_certificate_provider": "certificate provider plugins (use instances)",
    "custom_handshaker": "custom handshakers",
    "key_log": "TLS key logs",
}
_VALIDATION_REFUSED = {
    "trusted_ca": "CAs from files or inline (meshlib trusts the mesh root: use ISTIO_MUTUAL)",
    "system_root_certs": "the system's roots",
    "verify_certificate_spki": "SPKI pinning",
    "verify_certificate_hash": "certificate hash pinning",
    "require_signed_certificate_timestamp": "signed certificate timestamps",
    "crl": "CRLs",
    "allow_expired_certificate": "expired certificates",
    "custom_validator_config": "custom validators",
    "only_verify_leaf_cert_crl": "CRLs",
    "max_verify_depth": "a maximum verify depth",
}
_UPSTREAM_REFUSED = {
    "auto_host_sni": "SNI from the host",
    "auto_sni_san_validation": "SAN validation against the SNI",
    "allow_renegotiation": "renegotiation",
    "enforce_rsa_key_usage": "RSA key usage enforcement",
}


def decode_upstream_tls(ctx: DecodeContext, socket: Any) -> UpstreamTls:
    """The cluster's ``transport_socket``; XdsValidationError naming the field otherwise."""
    where = "transport_socket.typed_config"
    if socket.WhichOneof("config_type") != "typed_config":
        raise ctx.error(f"{where}: required (an UpstreamTlsContext)")
    upstream = unpack_any(ctx, socket.typed_config, tls_pb2.UpstreamTlsContext, where)
    _refuse(ctx, upstream, _UPSTREAM_REFUSED, where)
    common = upstream.common_tls_context
    at = f"{where}.common_tls_context"
    _refuse(ctx, common, _COMMON_REFUSED, at)
    identity = ""
    if common.HasField("tls_certificate_provider_instance"):
        identity = _instance(ctx, common, "tls_certificate_provider_instance", at)
    elif common.HasField("tls_certificate_certificate_provider_instance"):
        identity = _instance(ctx, common, "tls_certificate_certificate_provider_instance", at)
    root, matchers = _validation(ctx, common, at)
    return UpstreamTls(root, identity, matchers, upstream.sni)


def _validation(ctx: DecodeContext, common: Any, at: str) -> tuple[str, tuple[SanMatcher, ...]]:
    kind = common.WhichOneof("validation_context_type")
    if kind == "validation_context":
        validation, deprecated_root = common.validation_context, ""
        where = f"{at}.validation_context"
    elif kind == "combined_validation_context":
        combined = common.combined_validation_context
        where = f"{at}.combined_validation_context"
        _refuse(ctx, combined, _COMMON_REFUSED, where)
        validation = combined.default_validation_context
        where += ".default_validation_context"
        deprecated_root = ""
        if combined.HasField("validation_context_certificate_provider_instance"):
            deprecated_root = _instance(
                ctx, combined, "validation_context_certificate_provider_instance", where
            )
    elif kind == "validation_context_certificate_provider_instance":
        return _instance(ctx, common, "validation_context_certificate_provider_instance", at), ()
    else:
        raise ctx.error(f"{at}: a validation context with the root's provider instance is required")
    _refuse(ctx, validation, _VALIDATION_REFUSED, where)
    if (
        validation.trust_chain_verification
        != common_pb2.CertificateValidationContext.VERIFY_TRUST_CHAIN
    ):
        raise ctx.error(f"{where}.trust_chain_verification: only VERIFY_TRUST_CHAIN is supported")
    root = deprecated_root
    if validation.HasField("ca_certificate_provider_instance"):
        root = _instance(ctx, validation, "ca_certificate_provider_instance", where)
    if not root:
        raise ctx.error(f"{where}.ca_certificate_provider_instance: required (the mesh root)")
    return root, _matchers(ctx, validation, where)


def _matchers(ctx: DecodeContext, validation: Any, where: str) -> tuple[SanMatcher, ...]:
    found: list[SanMatcher] = []
    for i, matcher in enumerate(validation.match_subject_alt_names):
        kind, value = string_matcher(ctx, matcher, f"{where}.match_subject_alt_names[{i}]")
        found.append(SanMatcher(kind, value, matcher.ignore_case))
    uri = common_pb2.SubjectAltNameMatcher.URI
    for i, typed in enumerate(validation.match_typed_subject_alt_names):
        at = f"{where}.match_typed_subject_alt_names[{i}]"
        if typed.san_type != uri:
            name = common_pb2.SubjectAltNameMatcher.SanType.Name(typed.san_type)
            raise ctx.error(f"{at}.san_type: {name} is not supported (meshlib matches URI SANs)")
        kind, value = string_matcher(ctx, typed.matcher, f"{at}.matcher")
        found.append(SanMatcher(kind, value, typed.matcher.ignore_case))
    return tuple(found)


def _instance(ctx: DecodeContext, owner: Any, field: str, where: str) -> str:
    instance = getattr(owner, field)
    if not instance.instance_name:
        raise ctx.error(f"{where}.{field}.instance_name: required")
    return str(instance.instance_name)


def _refuse(ctx: DecodeContext, msg: Any, refused: dict[str, str], where: str) -> None:
    for descriptor, _value in msg.ListFields():  # the fields set (non-default)
        what = refused.get(descriptor.name)
        if what is not None:
            raise ctx.error(f"{where}.{descriptor.name}: not supported by meshlib ({what})")
