"""How a request to a URL was routed, kept to route the next one alike at once.

The front of an httpx request (is the host a mesh name, which service, its
snapshot, the plan, its compiled call plan) gives the same answer for every
request to the same URL and ``Host`` while the service's snapshot stands and
the plan is reusable (it reads no header, query or runtime value). A
:class:`RouteMemo` keeps that answer per (parsed URL, ``Host``), so a repeated
request costs one dictionary lookup and three identity checks instead of five
steps that each run cold after the previous request's network wait.

An entry is used only while the service is still in the mesh, its state
still holds the snapshot the entry was made with, and the call plan is
current (no breaker registered since); otherwise the request takes the full
path, which keeps a fresh entry. Bounded: once full, the memo starts over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

import httpx

from meshlib.routing.directory import ServiceDirectory
from meshlib.routing.plan import ForwardPlan
from meshlib.routing.service import ServiceState
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.transport._httpx_internals import fast_url_supported, host_header, url_key

if TYPE_CHECKING:
    from meshlib.transport.http_try import HttpCallPlan

#: httpx keeps a parsed URL as a named tuple: hashable, and the same parse for the
#: same URL. Without it (a future httpx) nothing is memoised.
_MEMOISABLE: Final = fast_url_supported()


class Routed(NamedTuple):
    """One URL's routing: the service, the snapshot, the plan and its call plan."""

    target: str
    state: ServiceState
    snapshot: ServiceSnapshot
    plan: ForwardPlan
    compiled: HttpCallPlan


class RouteMemo:
    """Routings by (parsed URL, ``Host`` header), valid while their snapshot stands."""

    __slots__ = ("_directory", "_routed")

    MAX_URLS: Final = 1024

    def __init__(self, directory: ServiceDirectory) -> None:
        self._directory = directory
        self._routed: dict[tuple[object, str | None], Routed] = {}

    def find(self, request: httpx.Request) -> Routed | None:
        """The routing of an earlier request like ``request``, if it still holds."""
        if not _MEMOISABLE:
            return None
        routed = self._routed.get((url_key(request.url), host_header(request)))
        if (
            routed is None
            or routed.state.view is not routed.snapshot
            or not self._directory.known_member(routed.target)
        ):
            return None
        if not routed.compiled.current():
            return None
        return routed

    def keep(
        self,
        request: httpx.Request,
        target: str,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        compiled: HttpCallPlan,
    ) -> Routed:
        """How ``request`` was routed, remembered when its plan is reusable."""
        routed = Routed(target, self._directory.service(target), snapshot, plan, compiled)
        if _MEMOISABLE and plan.reusable:
            memo = self._routed
            if len(memo) >= self.MAX_URLS:
                memo.clear()  # URLs of high cardinality: start over rather than grow
            memo[(url_key(request.url), host_header(request))] = routed
        return routed
