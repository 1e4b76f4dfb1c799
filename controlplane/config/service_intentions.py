"""Consul's ServiceIntentions (consul.hashicorp.com/v1alpha1, as its Kubernetes CRD
writes it): which services may call ``destination.name``.

``sources[]`` each name a service (``*`` any) in a namespace (default: the resource's)
with either an L4 ``action`` (allow / deny) or L7 ``permissions[]`` (each an action and
``http``: one of pathExact / pathPrefix / pathRegex, ``methods``, ``header[]`` with
exact / prefix / suffix / regex / present and ``invert``). A source service's identity is
its service account of that name, as consul-k8s requires. Peers, partitions, sameness
groups and JWT are refused as not supported yet.
"""

from __future__ import annotations

from controlplane.config import names
from controlplane.config.fields import Fields, as_string
from controlplane.config.http_match import regex_problem
from controlplane.config.resource import Header
from controlplane.security_model import (
    IntentionAction,
    IntentionHeader,
    IntentionPermission,
    IntentionSource,
    ServiceIntentions,
)

SPEC_FIELDS = ("destination", "sources")
SPEC_NOT_YET = ("jwt",)
DESTINATION_FIELDS = ("name", "namespace")
DESTINATION_NOT_YET = ("partition", "peer")
SOURCE_FIELDS = ("name", "namespace", "action", "permissions", "description")
SOURCE_NOT_YET = ("peer", "partition", "samenessGroup", "type")
PERMISSION_FIELDS = ("action", "http")
HTTP_FIELDS = ("pathExact", "pathPrefix", "pathRegex", "methods", "header")
HEADER_FIELDS = ("name", "exact", "prefix", "suffix", "regex", "present", "invert")
ACTIONS = tuple(action.value for action in IntentionAction)


def parse_service_intentions(header: Header, spec: Fields) -> ServiceIntentions | None:
    """Validate a ServiceIntentions spec; None when any issue was reported."""
    ctx = spec.ctx
    before = ctx.count
    spec.reject_unknown(SPEC_FIELDS, SPEC_NOT_YET, "ServiceIntentions spec")
    destination = spec.mapping("destination", required=True)
    name = None
    if destination is not None:
        destination.reject_unknown(DESTINATION_FIELDS, DESTINATION_NOT_YET, "destination")
        name = destination.string("name", required=True, check=_service_name)
        destination.string("namespace", check=names.dns_label)
    sources: list[IntentionSource] = []
    for path, value in spec.items("sources", required=True, non_empty=True) or ():
        fields = Fields.of(ctx, path, value)
        parsed = _source(fields, header.namespace) if fields is not None else None
        if parsed is not None:
            if any((s.name, s.namespace) == (parsed.name, parsed.namespace) for s in sources):
                ctx.error(fields.at("name") if fields else path, "duplicate source")
            sources.append(parsed)
    if ctx.count != before or name is None:
        return None
    return ServiceIntentions(
        name=header.name,
        namespace=header.namespace,
        destination=name,
        sources=tuple(sources),
        source=header.source,
    )


def _service_name(value: str) -> str | None:
    return None if value == "*" else names.service_host(value)


def _source(fields: Fields, default_namespace: str) -> IntentionSource | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(SOURCE_FIELDS, SOURCE_NOT_YET, "a source")
    name = fields.string("name", required=True, check=_account_name)
    namespace = fields.string("namespace", check=_namespace) or default_namespace
    action = fields.choice("action", supported=ACTIONS, what="action")
    permissions = [
        _permission(Fields.of(ctx, path, value))
        for path, value in fields.items("permissions", non_empty=True) or ()
    ]
    if fields.present("action") == fields.present("permissions"):
        ctx.error(fields.path, "set exactly one of action and permissions")
    if ctx.count != before or name is None:
        return None
    return IntentionSource(
        name=name,
        namespace=namespace,
        action=IntentionAction(action) if action is not None else None,
        permissions=tuple(p for p in permissions if p is not None),
    )


def _namespace(value: str) -> str | None:
    return None if value == "*" else names.dns_label(value)


def _account_name(value: str) -> str | None:
    return None if value == "*" else names.dns_subdomain(value)


def _permission(fields: Fields | None) -> IntentionPermission | None:
    if fields is None:
        return None
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(PERMISSION_FIELDS, ("jwt",), "a permission")
    action = fields.choice("action", supported=ACTIONS, what="action")
    if action is None and not fields.present("action"):
        ctx.error(fields.at("action"), f"is required ({' or '.join(ACTIONS)})")
    http = fields.mapping("http", required=True)
    path_kind, path = "", ""
    methods: tuple[str, ...] = ()
    headers: tuple[IntentionHeader, ...] = ()
    if http is not None:
        http.reject_unknown(HTTP_FIELDS, what="http")
        http.exclusive("pathExact", "pathPrefix", "pathRegex")
        for key, kind in (("pathExact", "exact"), ("pathPrefix", "prefix"), ("pathRegex", "regex")):
            check = regex_problem if kind == "regex" else _path
            text = http.string(key, check=check)
            if text is not None:
                path_kind, path = kind, text
        methods = tuple(
            m for m in (as_string(ctx, p, v) for p, v in http.items("methods") or ()) if m
        )
        headers = tuple(
            h for h in (_header(http, p, v) for p, v in http.items("header") or ()) if h
        )
        if not (path_kind or methods or headers):
            ctx.error(http.path, "must match on a path, methods or a header")
    if ctx.count != before or action is None:
        return None
    return IntentionPermission(IntentionAction(action), path_kind, path, methods, headers)


def _path(value: str) -> str | None:
    return None if value.startswith("/") else f"path {value!r} must start with '/'"


def _header(http: Fields, path: str, value: object) -> IntentionHeader | None:
    fields = Fields.of(http.ctx, path, value)
    if fields is None:
        return None
    before = http.ctx.count
    fields.reject_unknown(HEADER_FIELDS, what="a header matcher")
    name = fields.string("name", required=True)
    kinds = ("exact", "prefix", "suffix", "regex", "present")
    fields.exclusive(*kinds)
    kind = next((k for k in kinds if fields.present(k)), "")
    text = ""
    if kind == "present":
        if fields.boolean("present") is not True:
            http.ctx.error(fields.at("present"), "must be true when set")
    elif kind:
        text = fields.string(kind, check=regex_problem if kind == "regex" else None) or ""
    else:
        http.ctx.error(fields.path, f"must set one of {', '.join(kinds)}")
    invert = bool(fields.boolean("invert"))
    if http.ctx.count != before or name is None:
        return None
    return IntentionHeader(name=name.lower(), kind=kind, value=text, invert=invert)
