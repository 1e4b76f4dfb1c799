"""``meshctl token``: join tokens for workloads (admin API, scope ``admin``).

    meshctl token create --service-account SA [--namespace NS] [--ttl 24h] [-o token|json]
    meshctl token revoke ID

``create`` prints the token alone on stdout (``-o json``: token, id, identity,
expires_at); ``revoke`` takes the id ``-o json`` shows (or the token itself).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from controlplane.admin_client import (
    AdminClientError,
    AdminRefused,
    add_admin_options,
    admin_client,
)
from meshlib.errors import JoinTokenError
from meshlib.security.join_token import read_claims

_TOKEN_ID = re.compile(r"[0-9a-f]{32}")  # the jti the control plane issues (uuid4 hex)

EXIT_OK, EXIT_REFUSED = 0, 1


def add_token_command(commands: Any) -> None:
    token = commands.add_parser("token", help="create or revoke workload join tokens")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="a join token for one identity (printed alone on stdout)",
        description="Create a join token naming spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT, "
        "the control plane's CA fingerprint and its secure xDS address.",
    )
    create.add_argument("--service-account", required=True, metavar="SA")
    create.add_argument("--namespace", default="default", metavar="NS", help="(default: default)")
    create.add_argument("--ttl", default="24h", help="lifetime, e.g. 90s, 30m, 24h (default: 24h)")
    create.add_argument(
        "-o", "--output", choices=("token", "json"), default="token", help="(default: token)"
    )
    add_admin_options(create)
    create.set_defaults(run=_create)
    revoke = actions.add_parser("revoke", help="refuse a token from now on")
    revoke.add_argument("id", metavar="ID|TOKEN", help="the token id (or the token)")
    add_admin_options(revoke)
    revoke.set_defaults(run=_revoke)


def _refused(args: argparse.Namespace, exc: AdminClientError) -> int:
    print(f"meshctl token {args.token_command}: {exc}", file=sys.stderr)
    return EXIT_REFUSED


def _create(args: argparse.Namespace) -> int:
    body = {"service_account": args.service_account, "namespace": args.namespace, "ttl": args.ttl}
    try:
        with admin_client(args) as admin:
            issued = admin.post("/v1/tokens", body)
    except AdminRefused as exc:
        if exc.status == 404:
            exc = AdminRefused(404, {"error": "this control plane has no CA (secure xDS off)"})
        return _refused(args, exc)
    except AdminClientError as exc:
        return _refused(args, exc)
    text = json.dumps(issued) if args.output == "json" else str(issued["token"])
    print(text, flush=True)
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:
    token_id = args.id
    if "." in token_id:  # a whole token
        try:
            token_id = read_claims(token_id, "ID|TOKEN").token_id
        except JoinTokenError as exc:
            print(f"meshctl token revoke: {exc}", file=sys.stderr)
            return 2
    elif not _TOKEN_ID.fullmatch(token_id):  # tokens are not stored: a typo would "work"
        print(
            f"meshctl token revoke: ID {token_id!r}: not a token id (32 hex digits, as "
            "'token create -o json' shows; or give the token itself)",
            file=sys.stderr,
        )
        return 2
    try:
        with admin_client(args) as admin:
            admin.request("DELETE", f"/v1/tokens/{token_id}")
    except AdminClientError as exc:
        return _refused(args, exc)
    print(f"join token {token_id} revoked", flush=True)
    return EXIT_OK
