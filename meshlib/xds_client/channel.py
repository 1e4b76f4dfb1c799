"""The one place that turns a bootstrap server entry into a gRPC channel, so the
ADS stream and the registration client get the same credentials.

``insecure``: plaintext. ``tls`` (gRFC A65): the server is checked against the
root, and the client presents its certificate, from the entry's files (read at
each new channel: a reconnect picks up files ``meshctl agent`` replaced) or from
the join token's :class:`~meshlib.security.keeper.CertificateKeeper` (its current
certificate), so registration and ADS speak as the workload's identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

from meshlib.errors import BootstrapError
from meshlib.xds_client.bootstrap import ChannelCreds, XdsServerConfig

ChannelOptions = Sequence[tuple[str, int | str]]


def open_channel(server: XdsServerConfig, *, options: ChannelOptions = ()) -> grpc.Channel:
    """Open a channel to ``server`` with the credentials its bootstrap entry selects.

    ``options`` are extra grpc channel arguments (e.g. reconnect backoff).
    """
    creds = server.selected_creds
    if creds.type == "insecure":
        # grpc accepts the bootstrap's ``server_uri`` forms (``host:port``, ``dns:///...``).
        return grpc.insecure_channel(server.server_uri, options=list(options))
    if creds.type == "tls":
        credentials = _tls_credentials(creds, server.server_uri)
        return grpc.secure_channel(server.server_uri, credentials, options=list(options))
    raise BootstrapError(
        f"xds server {server.server_uri}: channel_creds type {creds.type!r} is not supported yet"
    )


def _tls_credentials(creds: ChannelCreds, uri: str) -> grpc.ChannelCredentials:
    if creds.certificates is not None:
        current = creds.certificates.current()
        return grpc.ssl_channel_credentials(current.root_pem, current.key_pem, current.chain_pem)
    files = creds.files
    if files is None:  # parse_bootstrap always sets them
        raise BootstrapError(f"xds server {uri}: tls channel_creds without a config")
    root = _read(files.ca_certificate_file, uri) if files.ca_certificate_file else None
    key = _read(files.private_key_file, uri) if files.private_key_file else None
    chain = _read(files.certificate_file, uri) if files.certificate_file else None
    return grpc.ssl_channel_credentials(root, key, chain)


def _read(path: str, uri: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BootstrapError(
            f"xds server {uri}: tls channel_creds: cannot read {path}: {exc.strerror or exc}"
        ) from exc
