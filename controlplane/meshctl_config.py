"""``meshctl apply / get / delete``: the mesh config through the admin API.

    meshctl apply -f FILE|DIR|- [-f ...] [-o json|yaml]
    meshctl get KIND [NAME] [-n NS] [-o yaml|json]
    meshctl delete KIND NAME [-n NS] [--resource-version N]

each with ``--admin-address`` and ``--token`` after the subcommand
(:mod:`controlplane.admin_client`). ``apply`` reads YAML as the control plane reads
``--config`` (a folder: every ``*.yaml`` / ``*.yml`` below it; duplicate keys refused)
and sends every document in one request: all are applied or none. The server's issues
name ``request#N``; they are printed as ``FILE#DOC`` of the document sent. ``get KIND``
without ``-n`` lists every namespace; one resource without ``-n`` is in ``default``.
Exit 0 on success, 1 when refused (the server's error printed) or unreachable, 2 on
bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from controlplane.addresses import AddressError
from controlplane.admin_client import (
    AdminClient,
    AdminClientError,
    AdminRefused,
    add_admin_options,
    admin_client,
)
from controlplane.meshctl_status import CLIENT_KINDS, run_get_clients

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
OUTPUTS = ("yaml", "json")


class _Usage(Exception):
    """Bad arguments: the message names the option."""


class _Unreadable(Exception):
    """The files to apply do not read as config; ``lines`` say where and why."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def add_config_commands(commands: Any) -> None:
    """Add apply, get and delete to meshctl's subcommands."""
    apply = commands.add_parser(
        "apply",
        help="apply config (YAML) through the admin API, all documents or none",
        description="Apply mesh config documents (ServiceEntry, WorkloadEntry, VirtualService, "
        "DestinationRule, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, "
        "ServiceIntentions) through the control plane's admin API, validated as --config files "
        "are: every document or none.",
    )
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE|DIR|-",
        help="a YAML file, a folder of them, or - for stdin (repeatable)",
    )
    apply.add_argument(
        "-o", "--output", choices=OUTPUTS, help="print the result as yaml or json (default: lines)"
    )
    add_admin_options(apply)
    apply.set_defaults(run=run_apply)

    get = commands.add_parser(
        "get", help="show applied and file-defined config", description="Show config resources."
    )
    get.add_argument("kind", help="e.g. VirtualService, virtualservices, vs")
    get.add_argument("name", nargs="?", help="one resource (default: list them)")
    get.add_argument(
        "-n", "--namespace", help="namespace (default: every one for a list, else default)"
    )
    get.add_argument("-o", "--output", choices=OUTPUTS, default="yaml", help="(default: yaml)")
    add_admin_options(get)
    get.set_defaults(run=run_get)

    delete = commands.add_parser(
        "delete", help="delete applied config", description="Delete an applied resource."
    )
    delete.add_argument("kind", help="e.g. VirtualService, virtualservices, vs")
    delete.add_argument("name")
    delete.add_argument("-n", "--namespace", default="default", help="(default: default)")
    delete.add_argument(
        "--resource-version",
        metavar="N",
        type=_resource_version,
        help="delete only if still at this resourceVersion",
    )
    add_admin_options(delete)
    delete.set_defaults(run=run_delete)


def _resource_version(text: str) -> str:
    """A resourceVersion as get prints it: refused here (exit 2), not by the server."""
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a resourceVersion as get shows it (a positive number such as "12")'
        )
    return text


# --- reading what to apply --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """Where a document to apply comes from (``FILE#DOC``), with stdin's text kept to find
    an issue's line (a file is read again for that)."""

    file: str
    index: int
    stdin: str | None = None

    def __str__(self) -> str:
        return f"{self.file}#{self.index}"

    def line(self, path: str) -> int | None:
        """The line ``path`` is at in this document, if it can be told."""
        from controlplane.config.yaml_lines import line_of

        text = self.stdin
        if text is None:
            try:
                text = Path(self.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return None
        return line_of(text, self.index, path)


def read_apply_documents(paths: Sequence[str]) -> tuple[list[object], list[Source]]:
    """The documents of ``paths`` as JSON values, and where each one comes from.
    Raises _Usage for a path that is not there, _Unreadable for YAML that is not config."""
    from controlplane.config import ConfigIssue
    from controlplane.config.yaml_files import config_files, documents_in, read_documents

    issues: list[ConfigIssue] = []
    found = []
    stdin: str | None = None
    for path in paths:
        if path == "-":
            raw = sys.stdin.buffer.read()
            found.extend(documents_in("<stdin>", raw, issues))
            stdin = raw.decode("utf-8", errors="replace")
            continue
        if not Path(path).exists():
            raise _Usage(f"-f {path}: no such file or folder")
        for file in config_files(Path(path), issues):
            found.extend(read_documents(file, issues))
    documents = [_as_json(d.data, "", f"{d.file}#{d.index}", issues) for d in found]
    if not issues and not documents:
        raise _Unreadable([f"{', '.join(paths)}: no documents to apply"])
    if issues:
        raise _Unreadable([_for_apply(issue) for issue in issues])
    return documents, [
        Source(d.file, d.index, stdin if d.file == "<stdin>" else None) for d in found
    ]


def _for_apply(issue: Any) -> str:
    """An issue of reading, in apply's words: an empty file is nothing to apply (the
    --config advice, delete the file, would delete nothing here)."""
    from controlplane.config.yaml_files import EMPTY_FILE_MESSAGE

    if issue.message != EMPTY_FILE_MESSAGE:
        return str(issue)
    return (
        f"{issue.file}: holds no resources (it is empty or only comments): nothing to apply; "
        "to remove an applied resource: meshctl delete KIND NAME"
    )


def _as_json(value: object, path: str, where: str, issues: list[Any]) -> object:
    """``value`` as JSON, or an issue for what JSON cannot carry as YAML read it
    (dates, binary, keys that are not strings or integers, NaN): the server must see
    what the file says."""
    from controlplane.config import ConfigIssue
    from controlplane.config.fields import child, item

    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, list):
        return [_as_json(v, item(path, i), where, issues) for i, v in enumerate(value)]
    if isinstance(value, dict):
        result: dict[str, object] = {}
        for key, inner in value.items():
            if isinstance(key, int) and not isinstance(key, bool):
                key = str(key)  # a bare port number (portLevelMtls), as kubectl carries it
            if not isinstance(key, str):
                file, _, doc = where.rpartition("#")
                issues.append(ConfigIssue(file, int(doc), path, f"key {key!r} must be a string"))
                continue
            result[key] = _as_json(inner, child(path, key), where, issues)
        return result
    file, _, doc = where.rpartition("#")
    message = f"{type(value).__name__} {value!r} is not a config value (quote it)"
    issues.append(ConfigIssue(file, int(doc), path, message))
    return None


# --- commands -----------------------------------------------------------------------


def _print_refusal(command: str, error: AdminClientError, sources: Sequence[Source] = ()) -> None:
    if not isinstance(error, AdminRefused):  # unreachable: nothing refused it
        print(f"meshctl {command}: {error}", file=sys.stderr)
        return
    if not error.issues:
        print(f"meshctl {command}: refused: {error}", file=sys.stderr)
        return
    print(f"meshctl {command}: refused ({error.status}):", file=sys.stderr)
    for issue in error.issues:
        print(f"  {_issue_line(issue, sources)}", file=sys.stderr)


def _issue_line(issue: Mapping[str, Any], sources: Sequence[Source]) -> str:
    """An issue of the server, naming ``FILE#DOC`` and the line for a document we sent."""
    location = str(issue.get("location", ""))
    document = issue.get("document") if issue.get("file") == "request" else None
    path, message = str(issue.get("path") or ""), issue.get("message", "")
    if isinstance(document, int) and 1 <= document <= len(sources):
        source = sources[document - 1]
        location = str(source)
        line = source.line(path)
        if line is not None:
            message = f"{message} (line {line})"
    return f"{location}: {path}: {message}" if path else f"{location}: {message}"


def _emit(data: object, output: str) -> None:
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    import yaml

    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def _kind(name: str) -> str:
    from controlplane.kinds import UnknownKind, canonical_kind

    try:
        return canonical_kind(name)
    except UnknownKind as exc:
        raise _Usage(str(exc)) from exc


def run_apply(args: argparse.Namespace) -> int:
    documents, sources = read_apply_documents(args.filename)
    with admin_client(args) as admin:
        try:
            result = admin.post("/v1/apply", {"documents": documents})
        except AdminClientError as exc:
            _print_refusal("apply", exc, sources)
            return EXIT_REFUSED
    if args.output:
        _emit(result, args.output)
        return EXIT_OK
    for entry in result.get("items", []):
        print(
            f"{entry['kind']} {entry['namespace']}/{entry['name']} {entry['result']} "
            f"(resourceVersion {entry['resourceVersion']})"
        )
    return EXIT_OK


def run_get(args: argparse.Namespace) -> int:
    if args.kind.lower() in CLIENT_KINDS:
        return run_get_clients(args, _emit)
    kind = _kind(args.kind)
    path = f"/v1/resources/{quote(kind, safe='')}"
    if args.name is not None:
        path += f"/{quote(args.name, safe='')}"
    params = {"namespace": args.namespace} if args.namespace else None
    with admin_client(args) as admin:
        try:
            result = admin.get(path, params)
        except AdminClientError as exc:
            _print_refusal("get", exc)
            _elsewhere(admin, exc, kind, args.name)
            return EXIT_REFUSED
    _emit(result, args.output)
    return EXIT_OK


def _elsewhere(admin: AdminClient, error: AdminClientError, kind: str, name: str | None) -> None:
    """After a 404 for a name: the namespaces that do hold it (``get`` and ``delete`` look
    in ``default`` unless ``-n``, which is easy to forget)."""
    if name is None or not isinstance(error, AdminRefused) or error.status != 404:
        return
    try:
        listed = admin.get(f"/v1/resources/{quote(kind, safe='')}")
    except AdminClientError:
        return
    namespaces = sorted(
        {
            str(item.get("metadata", {}).get("namespace", "default"))
            for item in listed.get("items", [])
            if isinstance(item, Mapping) and item.get("metadata", {}).get("name") == name
        }
    )
    if namespaces:
        where = ", ".join(f"-n {namespace}" for namespace in namespaces)
        print(f"  {kind} {name} is in another namespace: {where}", file=sys.stderr)


def run_delete(args: argparse.Namespace) -> int:
    kind = _kind(args.kind)
    params = {"namespace": args.namespace}
    if args.resource_version is not None:
        params["resourceVersion"] = args.resource_version
    path = f"/v1/resources/{quote(kind, safe='')}/{quote(args.name, safe='')}"
    with admin_client(args) as admin:
        try:
            admin.delete(path, params)
        except AdminClientError as exc:
            _print_refusal("delete", exc)
            _elsewhere(admin, exc, kind, args.name)
            return EXIT_REFUSED
    print(f"{kind} {args.namespace}/{args.name} deleted")
    return EXIT_OK


def run_config_command(args: argparse.Namespace) -> int:
    """Run apply/get/delete; maps errors to meshctl's exit codes."""
    try:
        code: int = args.run(args)
    except (_Usage, AddressError) as exc:
        print(f"meshctl {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Unreadable as exc:
        print(f"meshctl {args.command}: refused, nothing applied:", file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        return EXIT_REFUSED
    return code
