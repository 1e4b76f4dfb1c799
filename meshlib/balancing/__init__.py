"""Load balancing: Envoy's and gRPC's LB policies, priorities, localities, outlier detection.

Internal to meshlib (no stable API). The package's interface to the rest of meshlib:

- :mod:`.policy`: policies by the name CDS gives (``round_robin``, ``least_request``,
  ``random``, ``ring_hash``, ``maglev``, ``pick_first``); building a cluster's picker
- :mod:`.picker`: what the data path asks of a balancer, and what it tells it back
- :mod:`.runtime`: per-cluster state that outlives picker rebuilds (outlier
  detection, slow start, load reports)

Private to the package (``_name``): one module per policy (``_round_robin``,
``_least_request``, ``_random_pick``, ``_ring_hash``, ``_maglev``, ``_pick_first``),
``_locality`` (priority, then locality, then endpoint), ``_priority`` (priority load),
``_zone_aware``, ``_outlier``, ``_slow_start``, ``_edf``, ``_schedule``, ``_hosts``.
A new policy is one private module exporting ``POLICY`` and one entry in
:mod:`.policy`'s table.
"""
