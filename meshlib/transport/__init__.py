"""The httpx and gRPC adapters of the call plan, the per-try observer, endpoint pools.

Map (the whole request path: docs/architecture.md):

- httpx: :mod:`.http` (the transports) → :mod:`.http_route_memo`, :mod:`.http_routing`
  (target, plan, observer), :mod:`.http_membership` → :mod:`.http_try` (the HTTP
  adapter of a call plan: one try) → :mod:`.http_resilience` (classify, bound),
  :mod:`.http_body_deadline` (the route timeout over the body) → :mod:`.http_answers`
  (mesh outcomes as a sidecar's responses).
- gRPC: :mod:`.grpc_channel` / :mod:`.grpc_aio_channel` (over one
  :mod:`.grpc_channel_core`; target, plan and metrics in :mod:`.grpc_routing`) →
  :mod:`.grpc_calls` (sync multicallables) →
  :mod:`.grpc_try` (the gRPC adapter of a call plan: one try) →
  :mod:`.grpc_resilience` (classify) over :mod:`.grpc_call_options`;
  :mod:`.grpc_subchannels` (one channel per endpoint), :mod:`.grpc_aio_lazy`,
  :mod:`.grpc_aio_deferred` (aio call stand-ins).
- shared: the call plan and its two drivers live in :mod:`meshlib.resilience.call_plan`
  and :mod:`meshlib.resilience.call` (bound once per snapshot, route and cluster;
  the adapters above are its protocol parts), :mod:`.try_observer` (every try's load
  report and metrics),
  :mod:`.outcome` (outlier-detection outcomes), :mod:`.endpoint_pool` and
  :mod:`.pool_settings` (one client per endpoint and connection settings; mTLS in
  :mod:`.endpoint_tls` and, under httpx, :mod:`.tls_backend`), :mod:`.services` (what
  a transport needs of a mesh),
  :mod:`.mirror`, :mod:`.errors` / :mod:`.grpc_errors` / :mod:`.resilience_errors`
  (errors at the layer boundary), :mod:`._httpx_internals` (private: every httpx /
  httpcore internal read, each with its fallback).
- server side: :mod:`.grpc_server` (interceptors), :mod:`.grpc_inbound_server` (the
  ports a server serves), :mod:`.asgi_middleware` (``meshlib.asgi``),
  :mod:`.uvicorn_tls`, :mod:`.registration`.
"""
