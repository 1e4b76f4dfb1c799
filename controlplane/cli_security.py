"""``mesh-controlplane serve``'s security options: the CA and the secure xDS address.

--secure-xds-address HOST:PORT|off   default: the --xds-address host at its port + 2
                                     (127.0.0.1:15012 for the default 15010, as istiod
                                     pairs them), port 0 when --xds-address asks for 0
--trust-domain cluster.local   --ca-cert FILE --ca-key FILE
--cert-ttl 24h   --max-cert-ttl 2160h   --no-plaintext-registration
"""

from __future__ import annotations

import argparse
from pathlib import Path

from controlplane.addresses import HostPort, parse_host_port
from controlplane.ca import SecuritySettings
from controlplane.cli_common import DEFAULT
from controlplane.config.durations import parse_duration
from meshlib.errors import IdentityError
from meshlib.security.identity import check_trust_domain

OFF = "off"
SECURE_PORT_OFFSET = 2


def duration_argument(text: str) -> float:
    seconds = parse_duration(text)
    if isinstance(seconds, str):
        raise argparse.ArgumentTypeError(seconds)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be positive")
    return float(seconds)


def _trust_domain(text: str) -> str:
    try:
        return check_trust_domain(text, "--trust-domain")
    except IdentityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_security_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--secure-xds-address",
        metavar="HOST:PORT|off",
        help="ADS, registration and the certificate service over TLS with a certificate "
        "from the control plane's CA (default: the --xds-address host at its port + 2, "
        "127.0.0.1:15012; port 0 when --xds-address has port 0; 'off': none)",
    )
    serve.add_argument(
        "--trust-domain",
        type=_trust_domain,
        default="cluster.local",
        help="the SPIFFE trust domain of workload identities" + DEFAULT,
    )
    serve.add_argument(
        "--ca-cert",
        type=Path,
        metavar="FILE",
        help="an intermediate CA certificate followed by its chain up to the root (PEM); "
        "with --ca-key (default: a root made once and kept in the store)",
    )
    serve.add_argument("--ca-key", type=Path, metavar="FILE", help="the --ca-cert key (PEM)")
    serve.add_argument(
        "--cert-ttl",
        type=duration_argument,
        default="24h",
        metavar="DURATION",
        help="workload certificate lifetime when a workload asks for none" + DEFAULT,
    )
    serve.add_argument(
        "--max-cert-ttl",
        type=duration_argument,
        default="2160h",
        metavar="DURATION",
        help="longest workload certificate lifetime granted, 90 days" + DEFAULT,
    )
    serve.add_argument(
        "--jwks-refresh",
        type=duration_argument,
        default="20m",
        metavar="DURATION",
        help="how often each RequestAuthentication jwksUri is fetched again (istiod's "
        "default); a failed fetch keeps the last keys and is retried within 30s" + DEFAULT,
    )
    serve.add_argument(
        "--no-plaintext-registration",
        action="store_true",
        help="refuse workload registration on the plaintext --xds-address (it is "
        "unauthenticated there); workloads then register on the secure address",
    )


def secure_address(args: argparse.Namespace) -> HostPort | None:
    """The secure address to bind (AddressError for a bad one), None for 'off'."""
    text = args.secure_xds_address
    if text == OFF:
        return None
    if text is not None:
        return parse_host_port(text, what="--secure-xds-address", allow_port_zero=True)
    plain = parse_host_port(args.xds_address, what="--xds-address", allow_port_zero=True)
    port = 0 if plain.port == 0 else plain.port + SECURE_PORT_OFFSET
    if port > 65535:
        raise ValueError(f"--xds-address port {plain.port}: give --secure-xds-address")
    return plain.with_port(port)


def security_settings(args: argparse.Namespace) -> SecuritySettings | None:
    """The settings ``ControlPlane(security=...)`` takes; None without a secure address."""
    address = secure_address(args)
    if address is None:
        if args.ca_cert or args.ca_key or args.no_plaintext_registration:
            raise ValueError(
                "--secure-xds-address off: --ca-cert, --ca-key and "
                "--no-plaintext-registration need the secure address"
            )
        return None
    return SecuritySettings(
        address=address,
        trust_domain=args.trust_domain,
        ca_cert=args.ca_cert,
        ca_key=args.ca_key,
        cert_ttl_s=args.cert_ttl,
        max_cert_ttl_s=args.max_cert_ttl,
    )
