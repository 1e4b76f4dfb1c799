"""``meshctl agent``: keep a workload certificate in a folder for processes that are not
meshlib (grpcio's xDS credentials, Envoy), as Istio's agent does.

    meshctl agent --token-file FILE --cert-dir DIR [--xds-address HOST:PORT] [--once]
                  [--ttl DURATION]

Gets a key and certificate for the token's identity from the control plane's secure
xDS address (the token's, unless ``--xds-address`` says otherwise) and writes
``DIR/root-cert.pem``, ``DIR/key.pem`` (0600), ``DIR/cert-chain.pem``, each through a
temporary file renamed into place (a reader never sees half a file; grpc's
file_watcher re-reads when a file changes under it), and the two SDS files an Envoy
sidecar reads them through (``default.sds.json``, ``rootca.sds.json``: Envoy watches
the folder and re-reads renewed files, :mod:`controlplane.translate.security_tls`).
Then renews at half the lifetime (Istio's grace ratio) with the current certificate,
falling back to the token; one JSON line on stdout per write. ``--once`` exits after
the first write. A control plane that cannot be reached yet (workloads start in any
order) is waited for with backoff, a line on stderr per wait: until it answers, or
with ``--once`` up to 30 s; a refusal (revoked or expired token, another CA) exits at
once. Exit codes: 0 (``--once`` done, or SIGTERM/SIGINT), 1 the control plane refused
or could not be reached (``--once``), 2 bad arguments or an unusable token file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controlplane.cli_security import duration_argument
from controlplane.translate.security_tls import sds_files
from meshlib.errors import CertificateRequestError, JoinTokenError
from meshlib.security import obtain_certificate, read_claims, read_token_file, renew_certificate
from meshlib.security.first_certificate import FIRST_CONTACT_TIMEOUT_S, obtain_first_certificate
from meshlib.security.pki import WorkloadCertificate

CERT_CHAIN_FILE = "cert-chain.pem"
KEY_FILE = "key.pem"
ROOT_CERT_FILE = "root-cert.pem"
GRACE_RATIO = 0.5
MIN_RETRY_S = 0.5
MAX_RETRY_S = 30.0
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def add_agent_command(commands: Any) -> None:
    agent = commands.add_parser(
        "agent",
        help="keep a workload certificate in a folder (for grpcio and Envoy)",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
    )
    agent.add_argument("--token-file", required=True, type=Path, help="join token file")
    agent.add_argument("--cert-dir", required=True, type=Path, help="folder for the files")
    agent.add_argument(
        "--xds-address",
        metavar="HOST:PORT",
        help="the control plane's secure xDS address (default: the token's)",
    )
    agent.add_argument("--once", action="store_true", help="exit after the first write")
    agent.add_argument(
        "--ttl",
        type=duration_argument,
        metavar="DURATION",
        help="certificate lifetime to ask for (default: the control plane's --cert-ttl)",
    )


def _write(folder: Path, name: str, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_cert_dir(folder: Path, certificate: WorkloadCertificate) -> None:
    """Root first (trust never narrows mid-update), then the key and its chain; the SDS
    files (naming the folder's absolute path) when missing or different."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder, ROOT_CERT_FILE, certificate.root_pem, 0o644)
    _write(folder, KEY_FILE, certificate.key_pem, 0o600)
    _write(folder, CERT_CHAIN_FILE, certificate.chain_pem, 0o644)
    for name, text in sds_files(str(folder.resolve())).items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            _write(folder, name, text.encode(), 0o644)


def _announce(certificate: WorkloadCertificate, folder: Path) -> None:
    event = {
        "event": "certificate_written",
        "cert_dir": str(folder),
        "identity": str(certificate.identity),
        "serial": format(certificate.serial, "x"),
        "not_after": certificate.not_after.isoformat(),
    }
    print(json.dumps(event), flush=True)


def _fail(code: int, message: str) -> int:
    print(f"meshctl agent: {message}", file=sys.stderr, flush=True)
    return code


class _Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.token_file: Path = args.token_file
        self.folder: Path = args.cert_dir
        self.ttl_s = int(args.ttl) if args.ttl else None
        self.address_override: str | None = args.xds_address
        self.stop = threading.Event()

    def _token(self) -> tuple[str, str]:
        token = read_token_file(self.token_file)
        claims = read_claims(token, f"token file {self.token_file}")
        return token, self.address_override or claims.address

    def first(self, once: bool) -> WorkloadCertificate:
        """Waits for a control plane not reachable yet: until stopped, or with ``once``
        up to FIRST_CONTACT_TIMEOUT_S; a refusal raises at once."""
        token, address = self._token()

        def waiting(seconds: float, error: BaseException) -> None:
            print(f"meshctl agent: waiting for the control plane, retrying in {seconds:.1f}s: "
                  f"{error}", file=sys.stderr, flush=True)  # fmt: skip

        return obtain_first_certificate(
            token,
            address=address,
            ttl_s=self.ttl_s,
            timeout_s=FIRST_CONTACT_TIMEOUT_S if once else None,
            stop=self.stop,
            on_wait=waiting,
        )

    def renew(self, current: WorkloadCertificate) -> WorkloadCertificate:
        """With the current certificate; with the token when that is refused."""
        token, address = self._token()
        try:
            return renew_certificate(address, current, ttl_s=self.ttl_s)
        except CertificateRequestError as exc:
            print(f"meshctl agent: renewal with the certificate failed ({exc}); using the token",
                  file=sys.stderr, flush=True)  # fmt: skip
            return obtain_certificate(token, address=address, current=current, ttl_s=self.ttl_s)

    def run(self, current: WorkloadCertificate) -> None:
        while not self.stop.is_set():
            now = datetime.now(timezone.utc)
            wait_s = (current.renew_at(GRACE_RATIO) - now).total_seconds()
            if self.stop.wait(max(wait_s, 0.0)):
                return
            try:
                current = self.renew(current)
            except (CertificateRequestError, JoinTokenError) as exc:
                left = (current.not_after - datetime.now(timezone.utc)).total_seconds()
                retry = min(max(left / 10, MIN_RETRY_S), MAX_RETRY_S)
                print(f"meshctl agent: renewal failed, retrying in {retry:.1f}s: {exc}",
                      file=sys.stderr, flush=True)  # fmt: skip
                if self.stop.wait(retry):
                    return
                continue
            write_cert_dir(self.folder, current)
            _announce(current, self.folder)


def run_agent(args: argparse.Namespace) -> int:
    agent = _Agent(args)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stop.set())
    try:
        certificate = agent.first(args.once)
    except JoinTokenError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except CertificateRequestError as exc:
        return EXIT_OK if agent.stop.is_set() else _fail(EXIT_REFUSED, str(exc))
    try:
        write_cert_dir(agent.folder, certificate)
    except OSError as exc:
        return _fail(EXIT_REFUSED, f"--cert-dir {agent.folder}: {exc.strerror or exc}")
    _announce(certificate, agent.folder)
    if args.once:
        return EXIT_OK
    try:
        agent.run(certificate)
    except OSError as exc:
        return _fail(EXIT_REFUSED, f"--cert-dir {agent.folder}: {exc.strerror or exc}")
    return EXIT_OK
