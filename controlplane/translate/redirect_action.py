"""The non-forwarding actions: ``redirect`` and ``directResponse``.

Istio's mapping: uri → path_redirect, authority → host_redirect, port →
port_redirect, scheme → scheme_redirect; ``derivePort: FROM_REQUEST_PORT``
is the routed service's port (routes are built per port), the protocol default
needs no field (Envoy drops 80/443 itself).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc

from controlplane.traffic_model import HTTPDirectResponse, HTTPRedirect, RedirectPortPolicy
from controlplane.translate.errors import TranslationError

_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


def redirect_action(redirect: HTTPRedirect, routed_port: int, where: str) -> rc.RedirectAction:
    code = _CODES.get(redirect.redirect_code)
    if code is None:
        allowed = ", ".join(map(str, _CODES))
        raise TranslationError(
            f"{where}.redirectCode: {redirect.redirect_code} is not one of {allowed}"
        )
    action = rc.RedirectAction(response_code=code)
    if redirect.uri:
        action.path_redirect = redirect.uri
    if redirect.authority:
        action.host_redirect = redirect.authority
    if redirect.scheme:
        action.scheme_redirect = redirect.scheme
    if redirect.port is not None:
        if redirect.derive_port is not None:
            raise TranslationError(f"{where}: port and derivePort exclude each other")
        action.port_redirect = redirect.port
    elif redirect.derive_port is RedirectPortPolicy.FROM_REQUEST_PORT:
        action.port_redirect = routed_port
    return action


def direct_response_action(response: HTTPDirectResponse, where: str) -> rc.DirectResponseAction:
    if not 200 <= response.status <= 599:
        raise TranslationError(f"{where}.status: {response.status} is not within [200, 599]")
    action = rc.DirectResponseAction(status=response.status)
    if response.body is not None:
        try:
            action.body.CopyFrom(base_pb2.DataSource(inline_string=response.body.decode("utf-8")))
        except UnicodeDecodeError:
            action.body.CopyFrom(base_pb2.DataSource(inline_bytes=response.body))
    return action
