"""Consul ServiceIntentions: the CRD's fields land in the model, everything else is
refused with its place; translate orders sources by Consul's precedence (each source
covers only callers no earlier one matched) and L7 permissions by first match."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.security_model import (
    IntentionAction,
    IntentionHeader,
    IntentionPermission,
    IntentionSource,
)
from controlplane.translate.security_intentions import intention_deny_policies
from tests.controlplane.config_cases import assert_refused, documents, load_text


def intentions(spec: str, name: str = "echo") -> str:
    return (
        "apiVersion: consul.hashicorp.com/v1alpha1\nkind: ServiceIntentions\n"
        f"metadata: {{name: {name}, namespace: conference}}\nspec:\n{spec}"
    )


SPEC = """\
  destination: {name: echo}
  sources:
  - {name: "*", action: deny}
  - name: app
    namespace: team
    description: the app
    permissions:
    - action: allow
      http:
        pathExact: /a
        methods: [GET, PUT]
        header: [{name: X-Admin, exact: "yes"}, {name: x-b, present: true, invert: true}]
    - action: deny
      http: {pathRegex: "/b.*"}
"""


def test_fields_land_in_the_model(tmp_path: Path) -> None:
    (entry,) = load_text(tmp_path / "i.yaml", intentions(SPEC)).service_intentions
    assert entry.destination == "echo"
    assert entry.sources == (
        IntentionSource("*", "conference", IntentionAction.DENY),
        IntentionSource(
            "app",
            "team",
            None,
            (
                IntentionPermission(
                    IntentionAction.ALLOW,
                    "exact",
                    "/a",
                    ("GET", "PUT"),
                    (
                        IntentionHeader("x-admin", "exact", "yes"),
                        IntentionHeader("x-b", "present", invert=True),
                    ),
                ),
                IntentionPermission(IntentionAction.DENY, "regex", "/b.*"),
            ),
        ),
    )


REFUSED = [
    (
        "api-version",
        intentions(SPEC).replace("consul.hashicorp.com/v1alpha1", "v1"),
        "apiVersion",
        "must be one of consul.hashicorp.com/v1alpha1",
    ),
    (
        "destination-missing",
        intentions("  sources: [{name: a, action: allow}]\n"),
        "spec.destination",
        "is required",
    ),
    (
        "peer",
        intentions("  destination: {name: e, peer: p}\n  sources: [{name: a, action: allow}]\n"),
        "spec.destination.peer",
        "not supported yet",
    ),
    (
        "sources-empty",
        intentions("  destination: {name: e}\n  sources: []\n"),
        "spec.sources",
        "must not be empty",
    ),
    (
        "action-and-permissions",
        intentions(
            "  destination: {name: e}\n  sources: [{name: a, action: allow, permissions: "
            "[{action: deny, http: {pathPrefix: /x}}]}]\n"
        ),
        "spec.sources[0]",
        "set exactly one of action and permissions",
    ),
    (
        "neither",
        intentions("  destination: {name: e}\n  sources: [{name: a}]\n"),
        "spec.sources[0]",
        "set exactly one of action and permissions",
    ),
    (
        "action",
        intentions("  destination: {name: e}\n  sources: [{name: a, action: permit}]\n"),
        "spec.sources[0].action",
        "unknown action 'permit'",
    ),
    (
        "jwt",
        intentions("  destination: {name: e}\n  jwt: {}\n  sources: [{name: a, action: allow}]\n"),
        "spec.jwt",
        "not supported yet",
    ),
    (
        "source-peer",
        intentions("  destination: {name: e}\n  sources: [{name: a, peer: p, action: allow}]\n"),
        "spec.sources[0].peer",
        "not supported yet",
    ),
    (
        "two-paths",
        intentions(
            "  destination: {name: e}\n  sources: [{name: a, permissions: [{action: deny, "
            "http: {pathExact: /a, pathPrefix: /b}}]}]\n"
        ),
        "spec.sources[0].permissions[0].http.pathPrefix",
        "cannot be combined with pathExact",
    ),
    (
        "bad-regex",
        intentions(
            "  destination: {name: e}\n  sources: [{name: a, permissions: [{action: deny, "
            "http: {pathRegex: '('}}]}]\n"
        ),
        "spec.sources[0].permissions[0].http.pathRegex",
        "invalid RE2 regex",
    ),
    (
        "empty-http",
        intentions(
            "  destination: {name: e}\n  sources: [{name: a, permissions: [{action: deny, "
            "http: {}}]}]\n"
        ),
        "spec.sources[0].permissions[0].http",
        "must match on a path, methods or a header",
    ),
    (
        "header-kind",
        intentions(
            "  destination: {name: e}\n  sources: [{name: a, permissions: [{action: deny, "
            "http: {header: [{name: x}]}}]}]\n"
        ),
        "spec.sources[0].permissions[0].http.header[0]",
        "must set one of exact",
    ),
    (
        "duplicate-source",
        intentions(
            "  destination: {name: e}\n"
            "  sources: [{name: a, action: allow}, {name: a, action: deny}]\n"
        ),
        "spec.sources[1].name",
        "duplicate source",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_bad_intentions_are_refused(tmp_path: Path, text: str, path: str, message: str) -> None:
    assert_refused(tmp_path / "bad.yaml", text, 1, path, message)


def test_one_intentions_per_destination(tmp_path: Path) -> None:
    text = documents(intentions(SPEC, "a"), intentions(SPEC, "b"))
    assert_refused(
        tmp_path / "two.yaml",
        text,
        2,
        "spec.destination.name",
        "already has ServiceIntentions conference/a",
    )


def test_precedence_and_first_match_in_rbac(tmp_path: Path) -> None:
    (entry,) = load_text(tmp_path / "i.yaml", intentions(SPEC)).service_intentions
    assert intention_deny_policies([entry], ["other"]) == {}
    policies = intention_deny_policies([entry], ["echo"])
    assert sorted(policies) == [
        "intentions[echo]-source[conference/*]",
        "intentions[echo]-source[team/app]-permission[1]",
    ]
    app = policies["intentions[echo]-source[team/app]-permission[1]"]
    (principal,) = app.principals  # the exact source comes first: no exclusion
    assert principal.authenticated.principal_name.safe_regex.regex == (
        "spiffe://[^/]+/ns/team/sa/app"
    )
    (permission,) = app.permissions
    deny, not_earlier = permission.and_rules.rules
    assert deny.url_path.path.safe_regex.regex == "/b.*"
    assert not_earlier.HasField("not_rule")  # only when the allow permission did not match
    wildcard = policies["intentions[echo]-source[conference/*]"]
    (principal,) = wildcard.principals
    caller, not_app = principal.and_ids.ids
    assert caller.authenticated.principal_name.safe_regex.regex == (
        "spiffe://[^/]+/ns/conference/sa/[^/]+"
    )
    excluded = not_app.not_id.authenticated.principal_name.safe_regex.regex
    assert excluded == "spiffe://[^/]+/ns/team/sa/app"  # callers the exact source took
