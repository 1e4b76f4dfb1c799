"""What a matched route does, compiled once per route table.

A route forwards (:class:`ForwardAction`: cluster or weighted clusters, path
and host rewrites, hash policy, mirrors, header mutations), redirects
(:class:`~meshlib.routing._rewrite.RedirectBuilder`), answers directly
(:class:`DirectResponseAction`), or none of these — then the request fails
as Envoy fails it (404 there, NoRouteError / UNAVAILABLE here).
"""

from __future__ import annotations

import bisect
import random

from meshlib.routing._hash_policy import CompiledHashPolicy
from meshlib.routing._header_mutation import CompiledMutation, MutationChain, ordered_chain
from meshlib.routing._rewrite import PathRewrite
from meshlib.xds_client.resources import ClusterWeight, RouteAction
from meshlib.xds_client.route_policies import PER_MILLION

_randrange = random.randrange


class ClusterTarget:
    """One cluster a route can send to, with what choosing it adds to the request."""

    __slots__ = ("host_rewrite", "name", "request_headers", "response_headers")

    def __init__(
        self,
        name: str,
        host_rewrite: str | None,
        request_headers: MutationChain,
        response_headers: MutationChain,
    ) -> None:
        self.name = name
        self.host_rewrite = host_rewrite
        self.request_headers = request_headers if request_headers else None
        self.response_headers = response_headers if response_headers else None


class MirrorRule:
    """One ``request_mirror_policies`` entry."""

    __slots__ = ("cluster", "fraction", "keep_host")

    def __init__(self, cluster: str, fraction_per_million: int, keep_host: bool) -> None:
        self.cluster = cluster
        self.fraction = None if fraction_per_million >= PER_MILLION else fraction_per_million
        self.keep_host = keep_host

    def sampled(self) -> bool:
        """This request is mirrored (a fresh draw per policy, as Envoy's runtime check)."""
        return self.fraction is None or _randrange(PER_MILLION) < self.fraction


class LevelMutations:
    """The compiled route / virtual host / route config mutations around one route."""

    __slots__ = ("config", "most_specific_wins", "route", "vhost")

    def __init__(
        self,
        route: tuple[CompiledMutation, CompiledMutation],
        vhost: tuple[CompiledMutation, CompiledMutation],
        config: tuple[CompiledMutation, CompiledMutation],
        most_specific_wins: bool,
    ) -> None:
        self.route, self.vhost, self.config = route, vhost, config
        self.most_specific_wins = most_specific_wins

    def chains(
        self, cluster: tuple[CompiledMutation, CompiledMutation] | None = None
    ) -> tuple[MutationChain, MutationChain]:
        """(request, response) chains, a weighted cluster's own level first."""
        return (
            ordered_chain(
                cluster[0] if cluster else None,
                self.route[0],
                self.vhost[0],
                self.config[0],
                self.most_specific_wins,
            ),
            ordered_chain(
                cluster[1] if cluster else None,
                self.route[1],
                self.vhost[1],
                self.config[1],
                self.most_specific_wins,
            ),
        )


def _cluster_level(choice: ClusterWeight, where: str) -> tuple[CompiledMutation, CompiledMutation]:
    headers = choice.headers
    return (
        CompiledMutation(
            headers.request_headers_to_add,
            headers.request_headers_to_remove,
            f"{where}.request_headers",
        ),
        CompiledMutation(
            headers.response_headers_to_add,
            headers.response_headers_to_remove,
            f"{where}.response_headers",
        ),
    )


class ForwardAction:
    """A forwarding route's action, compiled."""

    __slots__ = (
        "_cumulative",
        "_single",
        "_targets",
        "_total",
        "action",
        "hash_policy",
        "host_rewrite",
        "mirrors",
        "path_rewrite",
    )

    def __init__(
        self,
        action: RouteAction,
        levels: LevelMutations,
        prefix_length: int | None,
        where: str,
    ) -> None:
        self.action = action
        self.host_rewrite = action.host_rewrite
        self.path_rewrite = (
            PathRewrite(action.prefix_rewrite, action.regex_rewrite, prefix_length, where)
            if action.prefix_rewrite is not None or action.regex_rewrite is not None
            else None
        )
        self.hash_policy = (
            CompiledHashPolicy(action.hash_policies, where) if action.hash_policies else None
        )
        self.mirrors = tuple(
            MirrorRule(m.cluster, m.fraction_per_million, m.disable_shadow_host_suffix_append)
            for m in action.request_mirror_policies
        )
        self._targets: tuple[ClusterTarget, ...] = ()
        self._cumulative: list[int] = []
        self._total = 0
        if action.cluster is not None:
            if action.weighted_clusters:
                raise ValueError(f"{where}: both cluster and weighted_clusters are set")
            self._single: ClusterTarget | None = ClusterTarget(
                action.cluster, None, *levels.chains()
            )
            return
        self._single = None
        if not action.weighted_clusters:
            raise ValueError(f"{where}: neither cluster nor weighted_clusters is set")
        targets = []
        for i, choice in enumerate(action.weighted_clusters):
            at = f"{where}.weighted_clusters[{i}]"
            if choice.weight < 0:
                raise ValueError(f"{at}.weight: negative")
            if choice.weight == 0:
                continue
            self._total += choice.weight
            self._cumulative.append(self._total)
            chains = levels.chains(_cluster_level(choice, at))
            targets.append(ClusterTarget(choice.name, choice.host_rewrite, *chains))
        if self._total == 0:
            raise ValueError(f"{where}.weighted_clusters: the weights sum to 0")
        if action.total_weight is not None and action.total_weight != self._total:
            raise ValueError(
                f"{where}.weighted_clusters.total_weight: {action.total_weight} but the "
                f"weights sum to {self._total}"
            )
        self._targets = tuple(targets)

    @property
    def static(self) -> bool:
        """Whether every request gets the same cluster, hash-free and unmirrored."""
        return self._single is not None and self.hash_policy is None and not self.mirrors

    def cluster_names(self) -> tuple[str, ...]:
        if self._single is not None:
            return (self._single.name,)
        return tuple(t.name for t in self._targets)

    def choose(self) -> ClusterTarget:
        """The cluster for one request: a uniform draw in [0, total weight) over
        the cumulative weights, as Envoy picks weighted clusters."""
        if self._single is not None:
            return self._single
        draw = _randrange(self._total)
        return self._targets[bisect.bisect_right(self._cumulative, draw)]
