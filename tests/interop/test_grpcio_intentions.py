"""Consul ServiceIntentions enforced by grpcio's own xDS server over mTLS: the control
plane's DENY RBAC policies follow Consul's precedence (an exact source before ``*``) and
L7 permissions in order (first match wins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.security_mesh import TD, call, mesh

pytestmark = pytest.mark.integration

INTENTIONS = """\
---
apiVersion: consul.hashicorp.com/v1alpha1
kind: ServiceIntentions
metadata: {name: echo, namespace: conference}
spec:
  destination: {name: echo}
  sources:
  - {name: "*", action: deny}
  - name: app
    permissions:
    - action: allow
      http: {pathExact: /test.Echo/Secret, header: [{name: x-admin, exact: "yes"}]}
    - action: deny
      http: {pathPrefix: /test.Echo/Secret}
  - {name: web, action: allow}
"""
WHO, SECRET = "/test.Echo/Who", "/test.Echo/Secret"


def test_grpcio_enforces_intentions_with_consul_precedence(tmp_path: Path) -> None:
    with mesh(tmp_path, "STRICT", f"{TD}/echo", INTENTIONS) as clients:
        app = clients.bootstrap("app", f"{TD}/app")
        calls = [(WHO, {}), (SECRET, {}), (SECRET, {"x-admin": "yes"})]
        assert call(app, calls, "xds") == [
            f"OK {WHO} {TD}/app",  # no permission matches: Consul's default, allow
            "PERMISSION_DENIED",  # the deny permission
            f"OK {SECRET} {TD}/app",  # an earlier allow permission matched first
        ]
        web = clients.bootstrap("web", f"{TD}/web")
        assert call(web, calls[:2], "xds") == [f"OK {WHO} {TD}/web", f"OK {SECRET} {TD}/web"]
        other = clients.bootstrap("other", f"{TD}/other")
        assert call(other, calls[:1], "xds") == ["PERMISSION_DENIED"]  # the "*" deny
