"""The workload's current certificate, kept fresh for the connections that present it.

    keeper = CertificateKeeper.from_token(token)     # gets one now, renews at half life
    keeper = CertificateKeeper.from_files(chain, key, root, refresh_s)  # meshctl agent's
    keeper = CertificateKeeper.fixed(certificate)    # tests
    keeper.current()                                 # what a new connection presents
    unsubscribe = keeper.subscribe(on_change)        # called after each renewal

With a token the key is made and kept in memory only; a control plane that cannot
be reached yet is waited for (:mod:`meshlib.security.first_certificate`). Renewal runs on a daemon
thread at half the lifetime (Istio's grace ratio), proven by the current
certificate (the token when that is refused), retried with backoff (tenacity)
while the old certificate stays in use. A folder kept by ``meshctl agent`` is
re-read when its files change. Subscribers learn of each new certificate; they
open new connections with it and let the old ones drain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import tenacity

from meshlib.errors import CertificateRequestError, JoinTokenError, SecurityError
from meshlib.observability.logging import get_logger
from meshlib.security.ca_client import obtain_certificate, renew_certificate
from meshlib.security.first_certificate import FIRST_CONTACT_TIMEOUT_S, obtain_first_certificate
from meshlib.security.join_token import JoinTokenClaims, read_claims
from meshlib.security.keeper_files import CertificateFiles
from meshlib.security.pki import WorkloadCertificate

log = get_logger(__name__)

GRACE_RATIO = 0.5
MIN_RETRY_S = 0.25
MAX_RETRY_S = 30.0

Subscriber = Callable[[WorkloadCertificate], None]


class CertificateKeeper:
    """Holds the workload's current :class:`WorkloadCertificate` and renews it."""

    def __init__(self, certificate: WorkloadCertificate | None = None, *, source: str = "") -> None:
        self.source = source
        self._lock = threading.Lock()
        self._current = certificate
        self._subscribers: list[Subscriber] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.claims: JoinTokenClaims | None = None
        self.address: str | None = None

    # --- construction ---------------------------------------------------------------

    @classmethod
    def fixed(cls, certificate: WorkloadCertificate) -> CertificateKeeper:
        """A keeper that never renews (tests, or a certificate managed elsewhere)."""
        return cls(certificate, source="fixed certificate")

    @classmethod
    def from_token(
        cls,
        token: str,
        *,
        where: str = "token",
        address: str | None = None,
        ttl_s: int | None = None,
        wait_s: float = FIRST_CONTACT_TIMEOUT_S,
    ) -> CertificateKeeper:
        """Gets the token's certificate now, waiting up to ``wait_s`` for a control plane
        that cannot be reached yet (raising JoinTokenError / CertificateRequestError naming
        the control plane and why), then renews it on a daemon thread."""
        claims = read_claims(token, where)
        address = address or claims.address
        first = obtain_first_certificate(token, address=address, ttl_s=ttl_s, timeout_s=wait_s)
        keeper = cls(first, source=f"control plane {address}")
        keeper.claims, keeper.address = claims, address

        def renew(current: WorkloadCertificate) -> WorkloadCertificate:
            try:
                return renew_certificate(address, current, ttl_s=ttl_s)
            except CertificateRequestError as exc:
                log.warning("certificate_renewal_by_proof_failed", error=str(exc))
                return obtain_certificate(token, address=address, current=current, ttl_s=ttl_s)

        keeper._start(lambda: keeper._renew_loop(renew))
        return keeper

    @classmethod
    def from_files(
        cls, chain_file: str | Path, key_file: str | Path, root_file: str | Path, refresh_s: float
    ) -> CertificateKeeper:
        """The certificate in files kept by ``meshctl agent`` (a bootstrap's file_watcher),
        re-read every ``refresh_s`` when they changed; SecurityError naming the file."""
        files = CertificateFiles(Path(chain_file), Path(key_file), Path(root_file))
        keeper = cls(files.read(), source=f"files {chain_file}")
        keeper._start(lambda: keeper._watch_loop(files, refresh_s))
        return keeper

    # --- the interface ----------------------------------------------------------------

    def current(self) -> WorkloadCertificate:
        """The certificate new connections present; SecurityError if there is none yet."""
        with self._lock:
            certificate = self._current
        if certificate is None:
            raise SecurityError(f"no workload certificate yet ({self.source or 'no source'})")
        return certificate

    def subscribe(self, on_change: Subscriber) -> Callable[[], None]:
        """Call ``on_change(new)`` after each change; returns the unsubscribe function."""
        with self._lock:
            self._subscribers.append(on_change)

        def unsubscribe() -> None:
            with self._lock:
                if on_change in self._subscribers:
                    self._subscribers.remove(on_change)

        return unsubscribe

    def close(self) -> None:
        """Stop renewing; the current certificate stays readable. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def replace(self, certificate: WorkloadCertificate) -> None:
        """Make ``certificate`` current and tell the subscribers (renewals, tests)."""
        with self._lock:
            self._current = certificate
            subscribers = list(self._subscribers)
        log.info(
            "workload_certificate_changed",
            identity=str(certificate.identity),
            serial=format(certificate.serial, "x"),
            not_after=certificate.not_after.isoformat(),
        )
        for on_change in subscribers:
            try:
                on_change(certificate)
            except Exception as exc:  # one subscriber's bug must not stop the others
                log.error("certificate_subscriber_failed", error=repr(exc))

    # --- background work ----------------------------------------------------------------

    def _start(self, target: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=target, name="meshlib-certificates", daemon=True)
        self._thread.start()

    def _pause(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _renew_loop(self, renew: Callable[[WorkloadCertificate], WorkloadCertificate]) -> None:
        while not self._stop.is_set():
            current = self.current()
            wait_s = (current.renew_at(GRACE_RATIO) - datetime.now(timezone.utc)).total_seconds()
            if self._stop.wait(max(wait_s, 0.0)):
                return
            retrying = tenacity.Retrying(
                retry=tenacity.retry_if_exception_type((CertificateRequestError, JoinTokenError)),
                wait=tenacity.wait_exponential(multiplier=MIN_RETRY_S, max=MAX_RETRY_S),
                stop=lambda _state: self._stop.is_set(),
                sleep=self._pause,
                before_sleep=lambda state: log.warning(
                    "certificate_renewal_failed",
                    source=self.source,
                    error=str(state.outcome.exception()) if state.outcome else "",
                ),
                reraise=True,
            )
            try:
                renewed = retrying(renew, current)
            except SecurityError:  # only when closing
                return
            if not self._stop.is_set():
                self.replace(renewed)

    def _watch_loop(self, files: CertificateFiles, refresh_s: float) -> None:
        while not self._stop.wait(refresh_s):
            try:
                renewed = files.read_if_changed()
            except SecurityError as exc:  # half-written set, or broken: keep the old one
                log.warning("certificate_files_unusable", error=str(exc))
                continue
            if renewed is not None:
                self.replace(renewed)


__all__ = ["GRACE_RATIO", "CertificateKeeper"]
