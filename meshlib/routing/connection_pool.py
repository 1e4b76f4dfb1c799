"""A cluster's connection-pool settings, as the endpoint clients can apply them.

Computed once per CDS update (on :class:`~meshlib.routing.snapshot.ClusterState`)
so the request path reads a ready object. Equal settings are one interned
object, compared and hashed by identity (cheap on the request path): the
endpoint pools key their clients by (endpoint, settings), so a config change
opens clients with the new settings instead of reusing the old ones.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshlib.xds_client.resources import ClusterResource, UpstreamProtocol
from meshlib.xds_client.upstream_tls import UpstreamTls

if TYPE_CHECKING:
    from meshlib.security.pki import WorkloadCertificate


@dataclass(frozen=True, slots=True, eq=False)
class PoolSettings:
    """What the clients apply of ``Cluster.connect_timeout`` and ``HttpProtocolOptions``.

    ``idle_timeout_s``: None = not configured (the client's default), 0 = never.
    ``not_applied``: the configured settings no client of meshlib can apply
    (Envoy applies them), by their xDS name.
    ``tls``: the cluster's mTLS (CDS ``UpstreamTlsContext``: the accepted peer
    identities), None for plaintext. ``certificate``: the workload certificate the
    endpoint clients present. A rotated certificate is new settings (the services
    rebuild their snapshots), so new clients use it and old ones drain.
    """

    cluster: str = ""
    connect_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    http2: bool = False
    not_applied: tuple[str, ...] = ()
    tls: UpstreamTls | None = None
    certificate: WorkloadCertificate | None = None


DEFAULT_POOL_SETTINGS = PoolSettings()


def only_certificate_differs(old: PoolSettings, new: PoolSettings) -> bool:
    """Whether ``new`` is ``old`` with a rotated certificate (and nothing else changed)."""
    return (
        old.certificate is not None
        and old.certificate is not new.certificate
        and (old.cluster, old.connect_timeout_s, old.idle_timeout_s, old.http2, old.not_applied)
        == (new.cluster, new.connect_timeout_s, new.idle_timeout_s, new.http2, new.not_applied)
        and old.tls == new.tls
    )


_interned: dict[tuple[object, ...], PoolSettings] = {}
_intern_lock = threading.Lock()


def pool_settings(
    cluster: ClusterResource, certificate: WorkloadCertificate | None = None
) -> PoolSettings:
    """The settings of ``cluster`` (connect timeout is always set: Envoy's default is 5 s);
    ``certificate`` is presented when the cluster has ``tls``."""
    options = cluster.http_protocol_options
    not_applied: list[str] = []
    if options.max_connection_duration_s is not None:
        not_applied.append("max_connection_duration")
    if options.max_requests_per_connection is not None:
        not_applied.append("max_requests_per_connection")
    connect_timeout_s = cluster.connect_timeout_s if cluster.connect_timeout_s > 0 else None
    http2 = options.upstream_protocol is UpstreamProtocol.HTTP2
    key = (
        cluster.name,
        connect_timeout_s,
        options.idle_timeout_s,
        http2,
        tuple(not_applied),
        cluster.tls,
        certificate.serial if certificate is not None and cluster.tls is not None else None,
    )
    found = _interned.get(key)
    if found is None:
        made = PoolSettings(
            cluster.name,
            connect_timeout_s,
            options.idle_timeout_s,
            http2,
            tuple(not_applied),
            cluster.tls,
            certificate if cluster.tls is not None else None,
        )
        with _intern_lock:
            if made.certificate is not None:  # earlier certificates' settings: forgotten
                for old in [k for k in _interned if k[:-1] == key[:-1] and k[-1] is not None]:
                    del _interned[old]
            found = _interned.setdefault(key, made)
    return found
