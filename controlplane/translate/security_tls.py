"""TLS contexts as each data plane reads its certificates.

Proxyless clients (grpcio, meshlib) name the bootstrap's certificate provider
``default`` (a file_watcher over the cert dir, gRFC A29): both the current fields
(``tls_certificate_provider_instance``, ``ca_certificate_provider_instance``; grpc
>= 1.66 requires them) and the deprecated ones older clients read. An Envoy
sidecar gets its certificates through file-based SDS over its cert dir (node metadata
``mesh.cert_dir``, default ``/etc/certs``, Istio's historical mount): the contexts name
the secrets ``default`` (its certificate and key) and ``ROOTCA`` (the mesh root), as
Istio names them, each read from an SDS file in the cert dir (:func:`sds_files`, written
by ``meshctl agent``) whose files Envoy watches (``watched_directory``). Envoy re-reads
watched files only for secrets delivered by SDS — inline file names in a TLS context
are read once — so this is what lets certificates that ``meshctl agent`` renews reach
new handshakes. No key travels over xDS: each sidecar reads only the files it can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, json_format

from controlplane.model import NodeInfo

PROVIDER_INSTANCE = "default"
ROOT_CERTIFICATE_NAME = "ROOTCA"
CERT_DIR_KEY = "mesh.cert_dir"
DEFAULT_CERT_DIR = "/etc/certs"
CERT_CHAIN, KEY, ROOT_CERT = "cert-chain.pem", "key.pem", "root-cert.pem"
# The SDS files in the cert dir, one secret each (Envoy reads DiscoveryResponse JSON).
SDS_FILES = {PROVIDER_INSTANCE: "default.sds.json", ROOT_CERTIFICATE_NAME: "rootca.sds.json"}


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
        return _sds_context(source.cert_dir, sans, present=present)
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


def _sds_secret(cert_dir: str, name: str) -> secret_pb2.SdsSecretConfig:
    path = config_source_pb2.PathConfigSource(path=f"{cert_dir}/{SDS_FILES[name]}")
    return secret_pb2.SdsSecretConfig(
        name=name,
        sds_config=config_source_pb2.ConfigSource(
            path_config_source=path, resource_api_version=config_source_pb2.V3
        ),
    )


def _sds_context(cert_dir: str, sans: Sequence[str], *, present: bool) -> tls_pb2.CommonTlsContext:
    """The sidecar's ``default`` and ``ROOTCA`` secrets from its cert dir's SDS files,
    peer SANs checked here (typed: URI for SPIFFE IDs)."""
    validation = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=[_san_matcher(san) for san in sans]
    )
    context = tls_pb2.CommonTlsContext(
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=validation,
            validation_context_sds_secret_config=_sds_secret(cert_dir, ROOT_CERTIFICATE_NAME),
        )
    )
    if present:
        context.tls_certificate_sds_secret_configs.append(_sds_secret(cert_dir, PROVIDER_INSTANCE))
    return context


def sds_files(cert_dir: str) -> dict[str, str]:
    """File name -> content of the SDS files Envoy reads in ``cert_dir`` (an absolute
    path, as the node metadata names it): the secrets over the cert dir's PEM files,
    with the folder watched so renewed files are read again."""
    directory = base_pb2.WatchedDirectory(path=cert_dir)
    secrets = {
        PROVIDER_INSTANCE: secret_pb2.Secret(
            name=PROVIDER_INSTANCE,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=f"{cert_dir}/{CERT_CHAIN}"),
                private_key=base_pb2.DataSource(filename=f"{cert_dir}/{KEY}"),
                watched_directory=directory,
            ),
        ),
        ROOT_CERTIFICATE_NAME: secret_pb2.Secret(
            name=ROOT_CERTIFICATE_NAME,
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(filename=f"{cert_dir}/{ROOT_CERT}"),
                watched_directory=directory,
            ),
        ),
    }
    files = {}
    for name, secret in secrets.items():
        packed = any_pb2.Any()
        packed.Pack(secret)
        response = discovery_pb2.DiscoveryResponse(resources=[packed])
        files[SDS_FILES[name]] = json_format.MessageToJson(response, indent=2) + "\n"
    return files


def file_tls_context(
    certificate: str, private_key: str, ca_certificates: str, sans: Sequence[str]
) -> tls_pb2.CommonTlsContext:
    """A DestinationRule's SIMPLE / MUTUAL files (read by the client; not watched)."""
    validation = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(filename=ca_certificates),
        match_typed_subject_alt_names=[_san_matcher(san) for san in sans],
    )
    context = tls_pb2.CommonTlsContext(validation_context=validation)
    if certificate:
        pair = common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(filename=certificate),
            private_key=base_pb2.DataSource(filename=private_key),
        )
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
