"""Path rewrites, redirect locations, shadow hosts and header mutation order."""

from __future__ import annotations

import pytest

from meshlib.routing._header_mutation import CompiledMutation, header_value, ordered_chain
from meshlib.routing._rewrite import PathRewrite, RedirectBuilder, shadow_authority
from meshlib.xds_client.resources import (
    HeaderAppendAction,
    HeaderValueOption,
    RedirectAction,
    RegexRewrite,
)


def test_prefix_rewrite_replaces_the_matched_prefix_and_keeps_the_query() -> None:
    rewrite = PathRewrite("/v2/", None, len("/api/"), "r")
    assert rewrite.apply("/api/users?x=1") == "/v2/users?x=1"
    whole = PathRewrite("/new", None, None, "r")  # exact or regex route: whole path
    assert whole.apply("/old/path?q") == "/new?q"


def test_regex_rewrite_substitutes_in_the_path_only() -> None:
    rewrite = PathRewrite(
        None, RegexRewrite("^/service/([^/]+)(/.*)$", r"\2/instance/\1"), None, "r"
    )
    assert (
        rewrite.apply("/service/foo/v1/api?a=/service/x/y") == "/v1/api/instance/foo?a=/service/x/y"
    )
    every = PathRewrite(None, RegexRewrite("o", "0"), None, "r")
    assert every.apply("/foo/boo") == "/f00/b00"


def test_bad_substitution_is_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match=r"r\.substitution: \\2 in"):
        PathRewrite(None, RegexRewrite("(a)", r"\2"), None, "r")


@pytest.mark.parametrize(
    ("redirect", "authority", "path", "location"),
    [
        (RedirectAction(path_redirect="/new"), "web:8080", "/old?x=1", "http://web:8080/new?x=1"),
        (
            RedirectAction(path_redirect="/new?y=2", strip_query=True),
            "web",
            "/old?x=1",
            "http://web/new?y=2",
        ),
        (RedirectAction(scheme="https"), "web:80", "/a", "https://web/a"),
        (RedirectAction(scheme="https"), "web:8080", "/a", "https://web:8080/a"),
        (RedirectAction(port=9443), "web:8080", "/a", "http://web:9443/a"),
        (RedirectAction(host="other", strip_query=True), "web:8080", "/a?b", "http://other/a"),
        (RedirectAction(prefix_rewrite="/v2"), "web", "/v1/x?q", "http://web/v2/x?q"),
        (
            RedirectAction(regex_rewrite=RegexRewrite("^/v1/(.*)$", r"/v3/\1")),
            "[::1]:80",
            "/v1/x",
            "http://[::1]:80/v3/x",
        ),
    ],
)
def test_redirect_locations(
    redirect: RedirectAction, authority: str, path: str, location: str
) -> None:
    assert RedirectBuilder(redirect, len("/v1"), "r").location("http", authority, path) == location


def test_shadow_authority_goes_before_the_port() -> None:
    assert shadow_authority("web:8080") == "web-shadow:8080"
    assert shadow_authority("web") == "web-shadow"
    assert shadow_authority("[::1]:80") == "[::1]-shadow:80"


def add(
    key: str, value: str, action: HeaderAppendAction = HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD
) -> HeaderValueOption:
    return HeaderValueOption(key, value, action)


def test_append_actions() -> None:
    mutation = CompiledMutation(
        [
            add("x-a", "2"),
            add("x-b", "new", HeaderAppendAction.ADD_IF_ABSENT),
            add("x-c", "new", HeaderAppendAction.ADD_IF_ABSENT),
            add("x-d", "set", HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD),
            add("x-e", "only-if", HeaderAppendAction.OVERWRITE_IF_EXISTS),
            add("x-f", "only-if", HeaderAppendAction.OVERWRITE_IF_EXISTS),
            add("x-empty", ""),
        ],
        ["x-gone"],
        "m",
    )
    headers = [
        ("x-a", "1"),
        ("x-b", "old"),
        ("x-d", "1"),
        ("x-d", "2"),
        ("x-f", "1"),
        ("X-Gone", "z"),
    ]
    mutation.apply(headers)
    assert headers == [
        ("x-a", "1"),
        ("x-b", "old"),
        ("x-a", "2"),
        ("x-c", "new"),
        ("x-d", "set"),
        ("x-f", "only-if"),
    ]


def test_levels_run_in_envoy_order() -> None:
    def level(value: str) -> CompiledMutation:
        return CompiledMutation(
            [add("x-who", value, HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD)], [], value
        )

    cluster, route, vhost, config = (
        level("cluster"),
        level("route"),
        level("vhost"),
        level("config"),
    )
    least = [("x-who", "client")]
    ordered_chain(cluster, route, vhost, config, most_specific_wins=False).apply(least)
    assert least == [("x-who", "config")]  # default: the least specific level wins
    most = [("x-who", "client")]
    ordered_chain(cluster, route, vhost, config, most_specific_wins=True).apply(most)
    assert most == [("x-who", "route")]  # the weighted cluster's level always runs first


def test_header_values_and_names_are_checked() -> None:
    assert header_value("100%%", "w") == "100%"
    with pytest.raises(ValueError, match=r"w: header value .* %COMMAND%"):
        header_value("%UPSTREAM_REMOTE_ADDRESS%", "w")
    with pytest.raises(ValueError, match=r"m_to_add\[0\]: header ':path' cannot"):
        CompiledMutation([add(":path", "/x")], [], "m")
