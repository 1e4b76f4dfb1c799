"""Side-by-side traffic tests (issue 3): one mesh config, served by the real control
plane, called through meshlib (httpx and gRPC), grpc's own xDS client (a
subprocess) and an Envoy sidecar; every client must route, split, hash, fail over
and eject alike, where it supports the feature. Helpers: tests/support/clients.py,
echo_servers.py, envoy.py, native_grpc.py, stats.py, traffic_config.py."""
