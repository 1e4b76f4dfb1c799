"""Routing: which route, cluster and endpoint set a request gets, from its service's xDS.

Internal to meshlib (no stable API; users go through ``meshlib.Mesh``). One
:class:`~meshlib.routing.service.ServiceState` per ``HOST:PORT`` follows
LDS -> RDS -> CDS -> EDS and publishes an immutable snapshot the request path reads.

The package's interface to the rest of meshlib:

- :mod:`.directory`: which names are mesh services, and their live state
- :mod:`.service`: one service's watches and current snapshot
- :mod:`.snapshot`: the immutable per-service view (route table, clusters, balancers)
- :mod:`.plan`: the routing decision for one request, computed purely from a snapshot
- :mod:`.connection_pool`: a cluster's connection-pool settings for the endpoint clients
- :mod:`.watch`: one xDS watch, and the xDS client surface routing needs

Private to the package (``_name``): ``_route_table`` (built from one RDS resource),
``_route_index`` (which routes could match a path), ``_domains`` (virtual host by
authority), ``_actions`` (what a matched route does), ``_rewrite`` (path rewrites,
redirects), ``_header_mutation``, ``_hash_policy``, ``_membership`` (the mesh's
names from one wildcard LDS watch). Matchers live in the leaf :mod:`meshlib.matching`.
"""
