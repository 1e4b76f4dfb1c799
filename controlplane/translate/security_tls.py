"""TLS contexts as each data plane reads its certificates.

Proxyless clients (grpcio, meshlib) name the bootstrap's certificate provider
``default`` (a file_watcher over the cert dir, gRFC A29): both the current fields
(``tls_certificate_provider_instance``, ``ca_certificate_provider_instance``; grpc
>= 1.66 requires them) and the deprecated ones older clients read. An Envoy
sidecar reads the files of its cert dir (node metadata ``mesh.cert_dir``, default
``/etc/certs``, Istio's historical mount) and watches the directory, so files that
``meshctl agent`` replaces atomically are picked up without a new config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from controlplane.model import NodeInfo

PROVIDER_INSTANCE = "default"
ROOT_CERTIFICATE_NAME = "ROOTCA"
CERT_DIR_KEY = "mesh.cert_dir"
DEFAULT_CERT_DIR = "/etc/certs"
CERT_CHAIN, KEY, ROOT_CERT = "cert-chain.pem", "key.pem", "root-cert.pem"


@dataclass(frozen=True, slots=True)
class CertSource:
    """Where the node's mesh certificate is: provider instances, or files in ``cert_dir``."""

    cert_dir: str = ""  # "" = certificate provider instances (proxyless)

    @classmethod
    def of(cls, node: NodeInfo) -> CertSource:
        if not node.is_sidecar:
            return cls()
        value = node.metadata.get(CERT_DIR_KEY)
        return cls(value if isinstance(value, str) and value else DEFAULT_CERT_DIR)


def mesh_tls_context(
    source: CertSource, sans: Sequence[str] = (), *, present: bool = True
) -> tls_pb2.CommonTlsContext:
    """The workload's certificate, checked against the mesh root (peer SANs when given)."""
    if source.cert_dir:
        return _file_context(
            f"{source.cert_dir}/{CERT_CHAIN}" if present else "",
            f"{source.cert_dir}/{KEY}" if present else "",
            f"{source.cert_dir}/{ROOT_CERT}",
            sans,
            watched=source.cert_dir,
        )
    identity = common_pb2.CertificateProviderPluginInstance(
        instance_name=PROVIDER_INSTANCE, certificate_name=PROVIDER_INSTANCE
    )
    root = common_pb2.CertificateProviderPluginInstance(
        instance_name=PROVIDER_INSTANCE, certificate_name=ROOT_CERTIFICATE_NAME
    )
    deprecated_identity = tls_pb2.CommonTlsContext.CertificateProviderInstance(
        instance_name=PROVIDER_INSTANCE, certificate_name=PROVIDER_INSTANCE
    )
    deprecated_root = tls_pb2.CommonTlsContext.CertificateProviderInstance(
        instance_name=PROVIDER_INSTANCE, certificate_name=ROOT_CERTIFICATE_NAME
    )
    validation = common_pb2.CertificateValidationContext(
        ca_certificate_provider_instance=root,
        match_subject_alt_names=[string_pb2.StringMatcher(exact=san) for san in sans],
    )
    context = tls_pb2.CommonTlsContext(
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=validation,
            validation_context_certificate_provider_instance=deprecated_root,
        )
    )
    if present:
        context.tls_certificate_provider_instance.CopyFrom(identity)
        context.tls_certificate_certificate_provider_instance.CopyFrom(deprecated_identity)
    return context


def file_tls_context(
    certificate: str, private_key: str, ca_certificates: str, sans: Sequence[str]
) -> tls_pb2.CommonTlsContext:
    """A DestinationRule's SIMPLE / MUTUAL files (read by the client)."""
    return _file_context(certificate, private_key, ca_certificates, sans, watched="")


def _file_context(
    certificate: str, private_key: str, ca: str, sans: Sequence[str], *, watched: str
) -> tls_pb2.CommonTlsContext:
    directory = base_pb2.WatchedDirectory(path=watched) if watched else None
    validation = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(filename=ca),
        match_typed_subject_alt_names=[_san_matcher(san) for san in sans],
    )
    if directory is not None:
        validation.watched_directory.CopyFrom(directory)
    context = tls_pb2.CommonTlsContext(validation_context=validation)
    if certificate:
        pair = common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(filename=certificate),
            private_key=base_pb2.DataSource(filename=private_key),
        )
        if directory is not None:
            pair.watched_directory.CopyFrom(directory)
        context.tls_certificates.append(pair)
    return context


def _san_matcher(san: str) -> common_pb2.SubjectAltNameMatcher:
    kind = (
        common_pb2.SubjectAltNameMatcher.URI
        if "://" in san
        else common_pb2.SubjectAltNameMatcher.DNS
    )
    return common_pb2.SubjectAltNameMatcher(
        san_type=kind, matcher=string_pb2.StringMatcher(exact=san)
    )
