"""Syntax checks for the names and addresses the config language uses.

Each check takes a string and returns ``None`` when it is valid, or a short
message saying what is wrong (the caller adds file, document and field path).
The rules are Kubernetes' and Istio's: DNS-1123 names, label keys and values,
``region/zone/subzone`` localities.
"""

from __future__ import annotations

import ipaddress
import re

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_MAX_LABEL = 63
_MAX_SUBDOMAIN = 253
_UNIX_PREFIX = "unix://"


def dns_label(value: str) -> str | None:
    """A DNS-1123 label: lower case letters, digits and '-', at most 63 characters."""
    if not value:
        return "must not be empty"
    if len(value) > _MAX_LABEL:
        return f"must be at most {_MAX_LABEL} characters"
    if not _DNS_LABEL.match(value):
        return (
            f"{value!r} must be a DNS-1123 label (lower case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return None


def dns_subdomain(value: str) -> str | None:
    """A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters."""
    if not value:
        return "must not be empty"
    if len(value) > _MAX_SUBDOMAIN:
        return f"must be at most {_MAX_SUBDOMAIN} characters"
    if not all(_DNS_LABEL.match(part) for part in value.split(".")):
        return (
            f"{value!r} must be a DNS-1123 name (lower case letters, digits, '-' and '.', "
            "each part starting and ending with a letter or digit)"
        )
    return None


def service_host(value: str) -> str | None:
    """A ServiceEntry host: a lower-case DNS name, no wildcard, no port."""
    if "*" in value:
        return f"wildcard host {value!r} is not supported yet"
    if ":" in value or "/" in value:
        return f"host {value!r} must be a DNS name without port or path"
    if value != value.lower():
        return f"host {value!r} must be lower case"
    return dns_subdomain(value)


def label_key(value: str) -> str | None:
    """A Kubernetes label key: ``[prefix/]name``, prefix a DNS subdomain."""
    prefix, slash, name = value.rpartition("/")
    if slash:
        problem = dns_subdomain(prefix)
        if problem is not None:
            return f"label key prefix: {problem}"
    if not name:
        return "label key must not be empty"
    if len(name) > _MAX_LABEL or not _LABEL_NAME.match(name):
        return (
            f"label key {value!r} is invalid (at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit, optional DNS prefix and '/')"
        )
    return None


def label_value(value: str) -> str | None:
    """A Kubernetes label value: empty, or a label name of at most 63 characters."""
    if value and (len(value) > _MAX_LABEL or not _LABEL_NAME.match(value)):
        return (
            f"label value {value!r} is invalid (at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit)"
        )
    return None


def locality(value: str) -> str | None:
    """``region``, ``region/zone`` or ``region/zone/subzone``, no empty part."""
    parts = value.split("/")
    if len(parts) > 3 or not all(part.strip() for part in parts):
        return f"locality {value!r} must be 'region', 'region/zone' or 'region/zone/subzone'"
    if any(part != part.strip() for part in parts):
        return f"locality {value!r} must not contain spaces around its parts"
    return None


def is_ip(value: str) -> bool:
    """True for an IPv4 or IPv6 address (no brackets, no port)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def endpoint_address(value: str, *, allow_hostname: bool) -> str | None:
    """An endpoint address: an IP, or (``allow_hostname``) a DNS name; never a socket."""
    if value.startswith(_UNIX_PREFIX):
        return f"unix domain socket address {value!r} is not supported yet"
    if is_ip(value):
        return None
    if not allow_hostname:
        return f"{value!r} must be an IP address (v4 or v6) with resolution STATIC"
    if dns_subdomain(value.lower()) is not None:
        return f"{value!r} must be an IP address or a DNS name"
    return None
