"""The admin API's HTTP client, for every ``meshctl`` command that talks to it.

    parser = ...add_parser("get"); add_admin_options(parser)
    with admin_client(args) as admin:         # AddressError for a bad --admin-address
        items = admin.get("/v1/resources/vs", params={"namespace": "default"})

The address comes from ``--admin-address``, else ``MESH_ADMIN_ADDRESS``, else
127.0.0.1:15014; the token from ``--token``, else ``MESH_ADMIN_TOKEN``, sent as
``Authorization: Bearer``. Answers are JSON; a 4xx/5xx raises :class:`AdminRefused`
with the server's error, a connection failure :class:`AdminUnreachable`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from controlplane.addresses import parse_host_port

DEFAULT_ADMIN_ADDRESS = "127.0.0.1:15014"
ADDRESS_ENV = "MESH_ADMIN_ADDRESS"
TOKEN_ENV = "MESH_ADMIN_TOKEN"
TIMEOUT_S = 30.0


class AdminClientError(Exception):
    """A call to the admin API did not succeed."""


class AdminUnreachable(AdminClientError):
    """No answer from the admin API (refused, timed out, not HTTP)."""


class AdminRefused(AdminClientError):
    """The admin API answered with an error status; ``body`` is its JSON (or text)."""

    def __init__(self, status: int, body: Any, hint: str = "") -> None:
        self.status = status
        self.body = body
        error = body.get("error") if isinstance(body, Mapping) else None
        super().__init__(f"{status}: {error if error is not None else body}{hint}")

    @property
    def issues(self) -> list[Mapping[str, Any]]:
        """The config issues of a refused apply (empty for other refusals)."""
        issues = self.body.get("issues") if isinstance(self.body, Mapping) else None
        return [i for i in issues if isinstance(i, Mapping)] if isinstance(issues, list) else []


def add_admin_options(parser: argparse.ArgumentParser) -> None:
    """``--admin-address`` and ``--token``, given after the subcommand."""
    parser.add_argument(
        "--admin-address",
        metavar="HOST:PORT",
        help=f"the control plane's admin API (default: ${ADDRESS_ENV}, else "
        f"{DEFAULT_ADMIN_ADDRESS})",
    )
    parser.add_argument(
        "--token",
        help=f"admin API token, sent as 'Authorization: Bearer' (default: ${TOKEN_ENV})",
    )


class AdminClient:
    """Synchronous JSON calls to one admin API."""

    def __init__(
        self, address: str, token: str | None = None, *, timeout_s: float = TIMEOUT_S
    ) -> None:
        """``address`` is HOST:PORT (AddressError otherwise)."""
        self.address = parse_host_port(address, what="--admin-address")
        headers = {"Accept": "application/json"}
        self._has_token = bool(token)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=f"http://{self.address}", headers=headers, timeout=timeout_s
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: object = None,
    ) -> Any:
        """The JSON answer of a 2xx; raises AdminRefused or AdminUnreachable."""
        try:
            response = self._http.request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            raise AdminUnreachable(
                f"admin API at {self.address} unreachable: {exc or type(exc).__name__} "
                f"(is the control plane running? --admin-address / ${ADDRESS_ENV})"
            ) from exc
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if response.is_error:
            raise AdminRefused(response.status_code, body, self._hint(response.status_code))
        return body

    def _hint(self, status: int) -> str:
        """Where a token comes from, for a 401 to a call that sent none."""
        if status == 401 and not self._has_token:
            return f" (no token was sent: give --token after the subcommand, or ${TOKEN_ENV})"
        return ""

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: object) -> Any:
        return self.request("POST", path, json=json)

    def delete(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("DELETE", path, params=params)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def admin_client(args: argparse.Namespace) -> AdminClient:
    """The client ``--admin-address`` / ``--token`` (or their environment) name."""
    address = args.admin_address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADMIN_ADDRESS
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    return AdminClient(address, token)
