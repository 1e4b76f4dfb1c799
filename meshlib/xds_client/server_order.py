"""Which of the bootstrap's ``xds_servers`` to talk to next: the fallback rule shared
by the ADS stream (:mod:`meshlib.xds_client.ads_stream`) and the registration client
(:mod:`meshlib.transport.registration`), so both leave a dead replica the same way.

gRFC A71's order: a round starts at the first server; a server that did not answer
(unreachable) sends the next attempt to the next server at once; a server that
answered, or the last one failing, ends the round, and the next round starts at the
first again after the caller's backoff. As gRFC A95's ``fallback_on_reachability_only``,
only reachability counts: an answer, even a refusal, is never a reason to fall back.
"""

from __future__ import annotations

from meshlib.observability.logging import get_logger

log = get_logger(__name__)


class ServerOrder:
    """The index of the server in use among ``count``; not thread-safe (one owner thread)."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"ServerOrder: need at least one server, got {count}")
        self.count = count
        self.index = 0

    def advance(self, answered: bool) -> bool:
        """Record how the attempt at the current server went. True: try the next
        server now (this one did not answer); False: the round is over, wait on the
        backoff and start again at the first."""
        if not answered and self.index + 1 < self.count:
            self.index += 1
            log.info("xds_server_fallback", server_index=self.index)
            return True
        self.index = 0
        return False
