"""``meshctl proxy-status``: every client connected to a control plane replica, as
``istioctl proxy-status`` shows them.

    meshctl proxy-status [-o table|json] [--admin-address HOST:PORT] [--token TOKEN]

Per client its node id, the replica serving it, its kind (meshlib, grpc, envoy)
and per type (CDS, EDS, LDS, RDS) ``SYNCED``, ``STALE``, ``NACKED`` or ``NOT
SENT``; a NACK's error is printed under the table. ``-o json`` prints
``{"items": [{"node": ID, "replica": R, "kind": K, "types": {"CDS": S, ...},
"errors": {"EDS": "..."}}]}``. It reads ``GET /v1/clients`` of the replica at
``--admin-address`` (a client of another replica is listed by that replica).
Exit 0 on success, 1 when the admin API refuses or cannot be reached, 2 on bad
arguments.

``meshctl get clients [NODE] [-o yaml|json]`` (routed here by ``get``) shows what
one client was last sent, per type: version, nonce, resource names, ACK or NACK
(``GET /v1/clients/{node}``); without NODE, every connected client in full.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from controlplane.addresses import AddressError
from controlplane.admin_client import AdminClientError, add_admin_options, admin_client

TYPES = ("CDS", "EDS", "LDS", "RDS")
CLIENT_KINDS = frozenset({"clients", "client"})  # ``meshctl get`` kinds answered here
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def add_status_command(commands: Any) -> None:
    """Add ``proxy-status`` to meshctl's subcommands."""
    status = commands.add_parser(
        "proxy-status",
        help="per connected client and xDS type: SYNCED, STALE, NACKED or NOT SENT",
        description="Show every xDS client connected to the control plane replica at "
        "--admin-address, and per type whether it has ACKed what it was sent.",
    )
    status.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="(default: table)"
    )
    add_admin_options(status)
    status.set_defaults(run=run_proxy_status)


def proxy_status_items(clients: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``GET /v1/clients`` entries as proxy-status items, by node id (streams that
    have not named their node yet are left out)."""
    items = []
    for entry in clients:
        if not entry.get("node_id"):
            continue
        statuses = entry.get("status", {})
        errors = {}
        for shown in entry.get("types", {}).values():
            nack = shown.get("last_nack")
            if shown.get("status") == "NACKED" and nack:
                errors[shown.get("type", "?")] = nack.get("error", "")
        items.append(
            {
                "node": entry["node_id"],
                "replica": entry.get("replica"),
                "kind": entry.get("kind", "unknown"),
                "types": {t: statuses.get(t, "NOT SENT") for t in TYPES},
                "errors": errors,
            }
        )
    return sorted(items, key=lambda item: (str(item["node"]), str(item["replica"])))


def render_table(items: Sequence[Mapping[str, Any]]) -> str:
    """An aligned table, then one line per NACK with its error."""
    header = ("NODE", "REPLICA", "KIND", *TYPES)
    rows = [
        (str(i["node"]), str(i["replica"]), str(i["kind"]), *(i["types"][t] for t in TYPES))
        for i in items
    ]
    widths = [max(len(row[c]) for row in (header, *rows)) for c in range(len(header))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]  # fmt: skip
    for item in items:
        for kind, error in sorted(item["errors"].items()):
            lines.append(f"{item['node']} {kind} NACKED: {error}")
    return "\n".join(lines) + "\n"


def run_proxy_status(args: argparse.Namespace) -> int:
    try:
        with admin_client(args) as admin:
            clients = admin.get("/v1/clients").get("clients", [])
    except AddressError as exc:
        print(f"meshctl proxy-status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AdminClientError as exc:
        print(f"meshctl proxy-status: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    items = proxy_status_items(clients)
    if args.output == "json":
        sys.stdout.write(json.dumps({"items": items}, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(items))
    sys.stdout.flush()
    return EXIT_OK


def run_get_clients(args: argparse.Namespace, emit: Callable[[Any, str], None]) -> int:
    """``meshctl get clients [NODE]``; ``emit`` prints in the ``-o`` format."""
    if args.namespace:
        print("meshctl get: -n: clients have no namespace", file=sys.stderr)
        return EXIT_USAGE
    path = "/v1/clients" if args.name is None else f"/v1/clients/{quote(args.name, safe='')}"
    try:
        with admin_client(args) as admin:
            result = admin.get(path)
    except AddressError as exc:
        print(f"meshctl get: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AdminClientError as exc:
        print(f"meshctl get: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    emit(result if args.name is not None else {"items": result.get("clients", [])}, args.output)
    return EXIT_OK
