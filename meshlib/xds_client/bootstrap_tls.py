"""The bootstrap's TLS parts: ``certificate_providers`` (gRFC A29 ``file_watcher``)
and the ``tls`` channel credentials of an xDS server (gRFC A65).

Both name PEM files: ``certificate_file``, ``private_key_file`` (both or neither)
and ``ca_certificate_file``; a provider also has a ``refresh_interval`` (a
protobuf JSON duration such as ``"600s"``; gRPC's default 10 minutes). meshlib
uses the provider named ``default`` (what ``meshctl bootstrap --cert-dir`` and
Istio write) as its workload certificate when it has no join token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from meshlib.errors import BootstrapError

DEFAULT_REFRESH_S = 600.0
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)s$")
_FILES = ("certificate_file", "private_key_file", "ca_certificate_file")

Fail = Callable[[str, str], BootstrapError]


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """PEM files named by a provider or ``tls`` channel credentials ("" = not given)."""

    certificate_file: str = ""
    private_key_file: str = ""
    ca_certificate_file: str = ""
    refresh_s: float = DEFAULT_REFRESH_S


def parse_files(raw: Mapping[str, object], where: str, fail: Fail) -> CertificateFiles:
    values: dict[str, str] = {}
    for name in _FILES:
        value = raw.get(name, "")
        if not isinstance(value, str):
            raise fail(f"{where}.{name}", "must be a string (a file path)")
        values[name] = value
    if bool(values["certificate_file"]) != bool(values["private_key_file"]):
        raise fail(where, "certificate_file and private_key_file go together")
    refresh = raw.get("refresh_interval", f"{DEFAULT_REFRESH_S:g}s")
    match = _DURATION.match(refresh) if isinstance(refresh, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise fail(f"{where}.refresh_interval", 'must be a positive duration such as "600s"')
    return CertificateFiles(**values, refresh_s=float(match.group(1)))


def parse_certificate_providers(raw: object, fail: Fail) -> Mapping[str, CertificateFiles]:
    """``certificate_providers``: instance name -> its files (only ``file_watcher``)."""
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, dict):
        raise fail("certificate_providers", "must be an object")
    out: dict[str, CertificateFiles] = {}
    for name, provider in raw.items():
        where = f"certificate_providers.{name}"
        if not isinstance(provider, dict):
            raise fail(where, "must be an object")
        plugin = provider.get("plugin_name")
        if plugin is None or plugin == "":
            continue  # gRPC skips an entry without a plugin name too
        if plugin != "file_watcher":
            raise fail(f"{where}.plugin_name", f"{plugin!r} is not supported (use 'file_watcher')")
        config = provider.get("config", {})
        if not isinstance(config, dict):
            raise fail(f"{where}.config", "must be an object")
        files = parse_files(config, f"{where}.config", fail)
        if not (files.certificate_file and files.ca_certificate_file):
            raise fail(
                f"{where}.config",
                "certificate_file, private_key_file and ca_certificate_file are required",
            )
        out[name] = files
    return MappingProxyType(out)
