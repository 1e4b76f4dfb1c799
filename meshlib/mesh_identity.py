"""Where a ``Mesh`` gets its identity and how it reaches the control plane with it.

Order (DESIGN.md): ``Mesh(token=...)``, then ``MESH_TOKEN``, then ``MESH_TOKEN_FILE``.
With a token the certificate is obtained at once (before any call; a control plane
not reachable yet is waited for up to the mesh's ``ready_timeout_s``), and the xDS
client (ADS and registration) talks to the token's secure xDS address with ``tls``
channel credentials from that certificate; the bootstrap (when there is one) still
names the node. With no bootstrap either, the node is named from the identity.
With no token: the bootstrap's ``certificate_providers`` file_watcher (``default``,
files kept by ``meshctl agent``); with none of that, no identity (plaintext).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from meshlib.errors import BootstrapError
from meshlib.xds_client.bootstrap import (
    BOOTSTRAP_CONFIG_ENV,
    BOOTSTRAP_PATH_ENV,
    Bootstrap,
    ChannelCreds,
    NodeConfig,
    XdsServerConfig,
    load_bootstrap,
)

if TYPE_CHECKING:  # the security modules load cryptography and PyJWT: only with an identity
    from meshlib.security.keeper import CertificateKeeper

TOKEN_ENV = "MESH_TOKEN"
TOKEN_FILE_ENV = "MESH_TOKEN_FILE"
# inbound listener names, as meshctl bootstrap writes them (DESIGN.md, gRFC A36)
INBOUND_TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s"
PROVIDER_INSTANCE = "default"


def find_token(
    token: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """(token, where it came from), or None when the process has no token."""
    env = os.environ if environ is None else environ
    if token is not None:
        return token, "Mesh(token=...)"
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    if env.get(TOKEN_FILE_ENV):
        from meshlib.security.join_token import read_token_file

        path = env[TOKEN_FILE_ENV]
        return read_token_file(path), f"${TOKEN_FILE_ENV} ({path})"
    return None


def mesh_identity(
    token: str | None, bootstrap: str | os.PathLike[str] | None, *, wait_s: float = 0.0
) -> tuple[Bootstrap, CertificateKeeper | None]:
    """The bootstrap to use and the keeper of this process's certificate (None: no
    identity), waiting up to ``wait_s`` for a control plane not reachable yet.
    JoinTokenError / CertificateRequestError / BootstrapError say why not."""
    found = find_token(token)
    if found is None:
        loaded = load_bootstrap(bootstrap)
        return loaded, files_keeper(loaded)
    from meshlib.security.keeper import CertificateKeeper

    keeper = CertificateKeeper.from_token(found[0], where=found[1], wait_s=max(wait_s, 0.0))
    try:
        has_bootstrap = bootstrap is not None or any(
            os.environ.get(name) for name in (BOOTSTRAP_PATH_ENV, BOOTSTRAP_CONFIG_ENV)
        )
        loaded = load_bootstrap(bootstrap) if has_bootstrap else _token_bootstrap(keeper)
        return secured_bootstrap(loaded, keeper), keeper
    except BaseException:
        keeper.close()
        raise


def secured_bootstrap(bootstrap: Bootstrap, keeper: CertificateKeeper) -> Bootstrap:
    """``bootstrap`` whose xDS server is the token's secure address, over ``tls`` with
    the keeper's certificate."""
    assert keeper.address is not None
    creds = ChannelCreds("tls", certificates=keeper)
    server = XdsServerConfig(keeper.address, (creds,), bootstrap.server.server_features)
    return Bootstrap(
        xds_servers=(server,),
        node=bootstrap.node,
        server_listener_resource_name_template=bootstrap.server_listener_resource_name_template,
        certificate_providers=bootstrap.certificate_providers,
    )


def files_keeper(bootstrap: Bootstrap) -> CertificateKeeper | None:
    """The keeper over the bootstrap's ``default`` file_watcher, None without providers."""
    providers = bootstrap.certificate_providers
    if not providers:
        return None
    files = providers.get(PROVIDER_INSTANCE)
    if files is None:
        raise BootstrapError(
            f"certificate_providers: meshlib uses the instance named {PROVIDER_INSTANCE!r} "
            f"as its workload certificate; found only {', '.join(sorted(providers))}"
        )
    from meshlib.security.keeper import CertificateKeeper

    return CertificateKeeper.from_files(
        files.certificate_file, files.private_key_file, files.ca_certificate_file, files.refresh_s
    )


def _token_bootstrap(keeper: CertificateKeeper) -> Bootstrap:
    assert keeper.claims is not None and keeper.address is not None
    identity = keeper.claims.identity
    node_id = f"{identity.service_account}.{identity.namespace}~{uuid.uuid4().hex[:12]}"
    node = NodeConfig(id=node_id, metadata=MappingProxyType({"NAMESPACE": identity.namespace}))
    server = XdsServerConfig(keeper.address, (ChannelCreds("tls", certificates=keeper),))
    # the inbound listener template meshctl bootstrap writes: without it a token-only
    # server would watch no listener and enforce no policy (fail open)
    return Bootstrap(
        xds_servers=(server,), node=node, server_listener_resource_name_template=INBOUND_TEMPLATE
    )


__all__ = [
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "files_keeper",
    "find_token",
    "mesh_identity",
    "secured_bootstrap",
]
