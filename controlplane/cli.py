"""``mesh-controlplane``: run the control plane until SIGINT / SIGTERM.

    mesh-controlplane serve [--config PATH] [--xds-address 127.0.0.1:15010]
        [--secure-xds-address 127.0.0.1:15012|off] [--trust-domain cluster.local]
        [--ca-cert FILE --ca-key FILE] [--cert-ttl 24h] [--max-cert-ttl 2160h]
        [--no-plaintext-registration]
        [--admin-address 127.0.0.1:15014] [--admin-allow-remote] [--allow-empty-config]
        [--admin-token-file FILE] [--replica-id ID]
        [--data-dir DIR] [--store sqlite:///FILE | etcd://HOST:PORT[,HOST:PORT...]]
        [--log-format console|json] [--log-level LEVEL]
        [--debounce-ms 100] [--max-debounce-ms 1000]
    mesh-controlplane --version

Once serving it prints exactly one JSON line on stdout,
``{"event": "serving", "xds_address": "HOST:PORT", "admin_address": "HOST:PORT",
"secure_xds_address": "HOST:PORT"}`` (the last one unless ``--secure-xds-address off``),
with the bound ports (so port 0 works for scripts and tests); logs go to
stderr. Exit codes: 0 after a clean shutdown, 2 for bad arguments or a bad
config (the issues are printed on stderr), 1 when a port cannot be bound or the
store cannot be opened (e.g. another control plane holds it, or no etcd member answers).
SIGHUP re-reads ``--admin-token-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence

import structlog

from controlplane.addresses import AddressError
from controlplane.admin import AdminAddressError
from controlplane.app import ControlPlane, DataDirError, StartupError
from controlplane.cli_common import DEFAULT, add_version
from controlplane.cli_security import add_security_options, security_settings
from controlplane.config import ConfigError
from controlplane.config.yaml_lines import with_line
from controlplane.heap import settle_after_start
from controlplane.logging_setup import LOG_FORMATS, configure_logging
from controlplane.store import StoreLocationError

log = structlog.get_logger("controlplane.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
PROG = "mesh-controlplane"
LOG_LEVELS = ("debug", "info", "warning", "error")


def _milliseconds(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of milliseconds")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The meshlib xDS control plane.")
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve xDS and the admin API for a mesh config",
        description="Serve xDS and the admin API for a mesh config, until SIGINT or SIGTERM.",
    )
    serve.add_argument(
        "--config",
        help="a YAML file or a folder of them, watched; read-only, layered with the config "
        "applied through the API (default: none, only the store's config)",
    )
    serve.add_argument(
        "--xds-address", default="127.0.0.1:15010", help="ADS + registration (gRPC)" + DEFAULT
    )
    serve.add_argument(
        "--admin-address", default="127.0.0.1:15014", help="admin HTTP API" + DEFAULT
    )
    serve.add_argument(
        "--admin-allow-remote",
        action="store_true",
        help="allow a non-loopback admin address (needs --admin-token-file)",
    )
    serve.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="admin API tokens, one 'TOKEN SCOPE[,SCOPE...]' a line (scopes read, write, "
        "register, admin); every route but /livez and /readyz then needs one; re-read on "
        "change and on SIGHUP (default: none, the API is open on loopback)",
    )
    serve.add_argument(
        "--replica-id",
        metavar="ID",
        help="this replica's name in the client view and metrics (default: HOST:PID)",
    )
    serve.add_argument(
        "--allow-empty-config",
        action="store_true",
        help="accept an edit that removes every ServiceEntry (refused by default, as an "
        "accident would take every configured service away from every client)",
    )
    serve.add_argument(
        "--data-dir",
        help="folder for the control plane's state (created if missing): the store is "
        "DIR/store.db unless --store says otherwise (default: none; without --store too, "
        "nothing outlives the process)",
    )
    serve.add_argument(
        "--store",
        metavar="URL",
        help="sqlite:///FILE (relative; sqlite:////abs/path absolute), or "
        "etcd://HOST:PORT[,HOST:PORT...] shared by replicas: the applied config and "
        "registrations (default: DIR/store.db with --data-dir, else memory)",
    )
    add_security_options(serve)
    serve.add_argument(
        "--log-format", choices=LOG_FORMATS, default="console", help="log lines" + DEFAULT
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="least level logged; xDS protocol chatter is debug" + DEFAULT,
    )
    serve.add_argument(
        "--debounce-ms",
        type=_milliseconds,
        default=100,
        metavar="MS",
        help="rebuild this long after the last change" + DEFAULT,
    )
    serve.add_argument(
        "--max-debounce-ms",
        type=_milliseconds,
        default=1000,
        metavar="MS",
        help="rebuild at most this long after the first change of a burst" + DEFAULT,
    )
    return parser


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return code


async def serve(args: argparse.Namespace) -> int:
    """Run until a signal; returns the exit code."""
    try:
        plane = ControlPlane(
            args.config,
            xds_address=args.xds_address,
            admin_address=args.admin_address,
            data_dir=args.data_dir,
            debounce_s=args.debounce_ms / 1000,
            max_debounce_s=args.max_debounce_ms / 1000,
            admin_allow_remote=args.admin_allow_remote,
            allow_empty_config=args.allow_empty_config,
            admin_token_file=args.admin_token_file,
            replica_id=args.replica_id,
            store=args.store,
            security=security_settings(args),
            plaintext_registration=not args.no_plaintext_registration,
            jwks_refresh_s=args.jwks_refresh,
        )
    except (AddressError, AdminAddressError, StoreLocationError, ValueError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, plane.reload_admin_tokens)
    try:
        try:
            await plane.start()
        except ConfigError as exc:
            where = f"config {args.config}" if args.config else "the stored config"
            issues = "\n".join(with_line(issue) for issue in exc.issues) or str(exc)
            return _fail(EXIT_USAGE, f"{where} refused, nothing served:\n{issues}")
        except DataDirError as exc:
            return _fail(EXIT_USAGE, str(exc))
        except StartupError as exc:
            return _fail(EXIT_FAILURE, str(exc))
        serving = {
            "event": "serving",
            "xds_address": str(plane.xds_address),
            "admin_address": str(plane.admin_address),
        }
        if plane.secure_xds_address is not None:
            serving["secure_xds_address"] = str(plane.secure_xds_address)
        settle_after_start()
        print(json.dumps(serving), flush=True)
        await stop.wait()
        log.info("controlplane_stopping")
        await plane.stop()
        return EXIT_OK
    finally:
        for signum in (*signals, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage error (or --help, --version)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    configure_logging(args.log_format, level=getattr(logging, args.log_level.upper()))
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
