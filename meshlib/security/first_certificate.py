"""The first certificate, waiting for a control plane that is not up yet.

Workloads start in any order (Istio's agent retries too): while the control plane
cannot be reached (connect refused or timed out, UNAVAILABLE, DEADLINE_EXCEEDED) the
first request is retried with exponential backoff (tenacity), each wait logged; a
refusal (a revoked or expired token, a CA other than the token's) raises at once.
``Mesh(token=...)`` waits up to its ``ready_timeout_s``; ``meshctl agent`` until
stopped (``--once``: :data:`FIRST_CONTACT_TIMEOUT_S`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import tenacity

from meshlib.errors import CertificateServiceUnreachableError
from meshlib.observability.logging import get_logger
from meshlib.security.ca_client import obtain_certificate
from meshlib.security.pki import WorkloadCertificate

log = get_logger(__name__)

FIRST_CONTACT_TIMEOUT_S = 30.0
MIN_WAIT_S = 0.25
MAX_WAIT_S = 5.0

OnWait = Callable[[float, BaseException], None]


def _pause(stopped: threading.Event, seconds: float) -> None:
    stopped.wait(seconds)


def obtain_first_certificate(
    token: str,
    *,
    address: str,
    ttl_s: int | None = None,
    timeout_s: float | None = FIRST_CONTACT_TIMEOUT_S,
    stop: threading.Event | None = None,
    on_wait: OnWait | None = None,
) -> WorkloadCertificate:
    """:func:`obtain_certificate`, retried while ``address`` cannot be reached, for up
    to ``timeout_s`` (None: until ``stop`` is set), each wait logged (or handed to
    ``on_wait(seconds, error)`` instead). The last
    CertificateServiceUnreachableError says how long it waited; any other
    CertificateRequestError / JoinTokenError is raised at once."""
    stopped = stop if stop is not None else threading.Event()
    backoff = tenacity.wait_exponential(multiplier=MIN_WAIT_S, max=MAX_WAIT_S)

    def wait(state: tenacity.RetryCallState) -> float:
        if timeout_s is None:
            return backoff(state)
        return max(0.0, min(backoff(state), timeout_s - (state.seconds_since_start or 0.0)))

    def give_up(state: tenacity.RetryCallState) -> bool:
        out_of_time = timeout_s is not None and (state.seconds_since_start or 0.0) >= timeout_s
        return stopped.is_set() or out_of_time

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        retry_in = state.next_action.sleep if state.next_action else 0.0
        if on_wait is not None and error is not None:
            on_wait(retry_in, error)
            return
        log.warning(
            "control_plane_unreachable_waiting",
            address=address,
            attempt=state.attempt_number,
            retry_in_s=round(retry_in, 2),
            error=str(error),
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(CertificateServiceUnreachableError),
        wait=wait,
        stop=give_up,
        sleep=lambda seconds: _pause(stopped, seconds),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(obtain_certificate, token, address=address, ttl_s=ttl_s)
    except CertificateServiceUnreachableError as exc:
        if timeout_s is None or timeout_s <= 0:
            raise
        raise CertificateServiceUnreachableError(
            f"{exc} (still unreachable after waiting {timeout_s:g}s for it to start)"
        ) from exc


__all__ = ["FIRST_CONTACT_TIMEOUT_S", "obtain_first_certificate"]
