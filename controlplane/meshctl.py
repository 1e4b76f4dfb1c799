"""``meshctl``: the operator's command line for the mesh.

    meshctl --version
    meshctl bootstrap --xds-address HOST:PORT [--xds-address HOST:PORT ...] --node-id ID
                      [--cluster C]
                      [--region R] [--zone Z] [--sub-zone S]
                      [--metadata KEY=VALUE ...] [--metadata-json KEY=JSON ...]
                      [--label KEY=VALUE ...] [--cert-dir DIR [--cert-refresh 60s]] [-o FILE]

writes the gRPC xDS bootstrap JSON (gRFC A27) that grpcio's native xDS client
and meshlib both read from ``GRPC_XDS_BOOTSTRAP``. Empty parts are left out.
``--metadata-json`` takes typed values, e.g. ``mesh.outbound_port=15001``.
``--label app=web`` adds to ``node.metadata.LABELS``, the caller's labels.
Each ``--xds-address`` is one ``xds_servers`` entry, in the order given (control-plane
replicas: clients fall back from one to the next).
``--cert-dir`` uses the certificates ``meshctl agent`` keeps there
(:mod:`controlplane.meshctl_certdir`); give it the secure xDS address.

    meshctl token create|revoke ...   (:mod:`controlplane.meshctl_token`)
    meshctl agent --token-file FILE --cert-dir DIR ...   (:mod:`controlplane.meshctl_agent`)

    meshctl apply -f FILE|DIR|-    meshctl get KIND [NAME] [-n NS] [-o yaml|json]
    meshctl delete KIND NAME [-n NS]

talk to the admin API (:mod:`controlplane.meshctl_config`), and so does
``meshctl proxy-status [-o table|json]`` (:mod:`controlplane.meshctl_status`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controlplane.addresses import AddressError, parse_host_port
from controlplane.cli_common import add_version
from controlplane.cli_security import duration_argument
from controlplane.meshctl_agent import add_agent_command, run_agent
from controlplane.meshctl_certdir import with_cert_dir
from controlplane.meshctl_config import add_config_commands, run_config_command
from controlplane.meshctl_status import add_status_command
from controlplane.meshctl_token import add_token_command

NODE_LABELS_KEY = "LABELS"  # as controlplane.translate.caller_node reads it
EXIT_OK = 0
EXIT_USAGE = 2


class BootstrapArgumentError(ValueError):
    """A bootstrap option is invalid; the message names the option."""


def build_bootstrap(
    *,
    xds_addresses: Sequence[str],
    node_id: str,
    cluster: str = "",
    region: str = "",
    zone: str = "",
    sub_zone: str = "",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The bootstrap document; raises BootstrapArgumentError on bad input."""
    servers: list[str] = []
    for address in xds_addresses:
        try:
            server = str(parse_host_port(address, what="--xds-address"))
        except AddressError as exc:
            raise BootstrapArgumentError(str(exc)) from exc
        if server in servers:
            raise BootstrapArgumentError(f"--xds-address: {address!r} is given twice")
        servers.append(server)
    if not servers:
        raise BootstrapArgumentError("--xds-address: at least one is required")
    if not node_id.strip():
        raise BootstrapArgumentError("--node-id: must not be empty")
    node: dict[str, Any] = {"id": node_id}
    if cluster:
        node["cluster"] = cluster
    locality = {
        key: value
        for key, value in (("region", region), ("zone", zone), ("sub_zone", sub_zone))
        if value
    }
    if locality:
        node["locality"] = locality
    if metadata:
        node["metadata"] = dict(metadata)
    return {
        "xds_servers": [
            {
                "server_uri": server,
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
            for server in servers
        ],
        "node": node,
        # What grpcio's xDS server asks for (gRFC A36), as Istio names inbound listeners.
        "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s",
    }


def parse_metadata(pairs: Sequence[str], typed_pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings, then ``KEY=JSON`` typed values; a repeated key is an error."""
    metadata: dict[str, Any] = {}
    sources = (("--metadata", pairs, False), ("--metadata-json", typed_pairs, True))
    for option, items, typed in sources:
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise BootstrapArgumentError(f"{option} {item!r}: expected KEY=VALUE")
            if key in metadata:
                raise BootstrapArgumentError(f"{option} {item!r}: key {key!r} given twice")
            if not typed:
                metadata[key] = value
                continue
            try:
                metadata[key] = json.loads(value)
            except ValueError as exc:
                raise BootstrapArgumentError(
                    f"{option} {item!r}: value is not JSON ({exc}); quote strings"
                ) from exc
    return metadata


def parse_labels(pairs: Sequence[str]) -> dict[str, str]:
    """``--label KEY=VALUE`` items as Kubernetes labels; a repeated key is an error."""
    if not pairs:
        return {}
    # Imported here: the config package loads YAML and RE2, which plain bootstraps skip.
    from controlplane.config import names

    labels: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        problem = names.label_key(key) or names.label_value(value) if sep else "expected KEY=VALUE"
        if key in labels:
            problem = f"label {key!r} given twice"
        if problem is not None:
            raise BootstrapArgumentError(f"--label {item!r}: {problem}")
        labels[key] = value
    return labels


def with_labels(metadata: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """``metadata`` with ``labels`` as ``LABELS`` (Istio's key), unless it has its own."""
    if not labels:
        return metadata
    if NODE_LABELS_KEY in metadata:
        raise BootstrapArgumentError(
            f"--label: {NODE_LABELS_KEY} is also given with --metadata/--metadata-json"
        )
    return {**metadata, NODE_LABELS_KEY: labels}


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a bootstrap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshctl", description="Operate the meshlib mesh.")
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    boot = commands.add_parser(
        "bootstrap", help="write the xDS bootstrap JSON for grpcio and meshlib"
    )
    boot.add_argument(
        "--xds-address",
        required=True,
        action="append",
        metavar="HOST:PORT",
        help="control plane HOST:PORT; repeat for replicas, tried in the order given",
    )
    boot.add_argument("--node-id", required=True, help="this node's id")
    boot.add_argument(
        "--cluster", default="", help="node cluster, often the service name (default: none)"
    )
    boot.add_argument("--region", default="")
    boot.add_argument("--zone", default="")
    boot.add_argument("--sub-zone", default="")
    boot.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a node metadata string (repeatable; default: none)",
    )
    boot.add_argument(
        "--metadata-json",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a typed node metadata value, e.g. mesh.outbound_port=15001 (repeatable)",
    )
    boot.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label of this workload, written to node.metadata.LABELS (repeatable): "
        "what VirtualService sourceLabels and failoverPriority read",
    )
    boot.add_argument(
        "--cert-dir",
        type=Path,
        metavar="DIR",
        help="mTLS from the files 'meshctl agent' keeps in DIR: a file_watcher certificate "
        "provider and tls channel_creds (give the secure xDS address)",
    )
    boot.add_argument(
        "--cert-refresh",
        type=duration_argument,
        metavar="DURATION",
        help="how often gRPC re-reads the --cert-dir files (default: a tenth of the "
        "lifetime of the certificate there, 60s without one)",
    )
    boot.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    add_config_commands(commands)
    add_status_command(commands)
    add_token_command(commands)
    add_agent_command(commands)
    return parser


def _bootstrap(args: argparse.Namespace) -> int:
    try:
        document = build_bootstrap(
            xds_addresses=args.xds_address,
            node_id=args.node_id,
            cluster=args.cluster,
            region=args.region,
            zone=args.zone,
            sub_zone=args.sub_zone,
            metadata=with_labels(
                parse_metadata(args.metadata, args.metadata_json), parse_labels(args.label)
            ),
        )
    except BootstrapArgumentError as exc:
        print(f"meshctl bootstrap: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.cert_refresh is not None and args.cert_dir is None:
        print("meshctl bootstrap: --cert-refresh needs --cert-dir", file=sys.stderr)
        return EXIT_USAGE
    if args.cert_dir is not None:
        document = with_cert_dir(document, args.cert_dir, args.cert_refresh)
    text = json.dumps(document, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return EXIT_OK
    try:
        write_atomically(args.output, text)
    except OSError as exc:
        print(f"meshctl bootstrap: -o {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return EXIT_OK


# Options every admin API command takes after its subcommand, as DESIGN.md fixes it.
_AFTER_SUBCOMMAND = ("--admin-address", "--token")


def _misplaced_option(argv: Sequence[str]) -> str | None:
    """The admin option given before the subcommand (argparse would call its value an
    unknown COMMAND), or None."""
    first = argv[0].split("=", 1)[0] if argv else ""
    return first if first in _AFTER_SUBCOMMAND else None


def _run(argv: Sequence[str] | None) -> int:
    misplaced = _misplaced_option(sys.argv[1:] if argv is None else argv)
    if misplaced is not None:
        print(
            f"meshctl: {misplaced} goes after the subcommand, e.g. 'meshctl get vs {misplaced} "
            "...' (or set $MESH_ADMIN_ADDRESS / $MESH_ADMIN_TOKEN)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "bootstrap":
        return _bootstrap(args)
    if args.command == "agent":
        return run_agent(args)
    return run_config_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """meshctl; output piped into a reader that stops early (``| head``) ends it quietly."""
    try:
        code = _run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's recipe: nothing more reaches the reader, and the interpreter's own flush
        # at exit must not raise again, so stdout becomes /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
