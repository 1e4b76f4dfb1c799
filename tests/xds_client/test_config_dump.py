"""The config dump is JSON-able whatever the resources hold (maps, sets, bytes)."""

from __future__ import annotations

import json

from envoy.config.route.v3 import route_components_pb2
from google.protobuf import struct_pb2

from meshlib.xds_client import ENDPOINTS, ROUTE_CONFIG
from meshlib.xds_client.cache import to_jsonable
from tests.xds_client import xds_builders as b


def test_maps_sets_and_bytes_become_json() -> None:
    config = b.route_config()
    route = config.virtual_hosts[0].routes[0]
    route.route.retry_policy.retry_on = "5xx,reset"
    direct = config.virtual_hosts[0].routes.add(name="direct")
    direct.match.prefix = "/direct"
    direct.direct_response.CopyFrom(
        route_components_pb2.DirectResponseAction(status=200, body={"inline_bytes": b"\xffok"})
    )
    assignment = b.cluster_load_assignment()
    labels = struct_pb2.Struct()
    labels.update({"version": "v1"})
    lb_endpoint = assignment.endpoints[0].lb_endpoints[0]
    lb_endpoint.metadata.filter_metadata["envoy.lb"].CopyFrom(labels)

    models = [ROUTE_CONFIG.decode(b.pack(config)), ENDPOINTS.decode(b.pack(assignment))]
    dumped = json.loads(json.dumps(to_jsonable(models)))
    routes = dumped[0]["virtual_hosts"][0]["routes"]
    assert sorted(routes[0]["action"]["retry_policy"]["retry_on"]) == ["5xx", "reset"]
    assert routes[1]["direct_response"]["body"] == "\\xffok"
    endpoint = dumped[1]["localities"][0]["endpoints"][0]
    assert endpoint["labels"] == {"version": "v1"}
