"""``HOST:PORT`` parsing and DNS-name checks shared by the control plane's
listeners, the registry and meshctl, so every entry point rejects the same
bad input with the same words."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_DNS_NAME_LENGTH = 253


class AddressError(ValueError):
    """An address or host name is malformed; the message says which and why."""


def is_dns_name(text: str) -> bool:
    """True for a lower-case DNS name such as ``sessions`` or ``a.b.svc``."""
    if not text or len(text) > MAX_DNS_NAME_LENGTH:
        return False
    return all(_DNS_LABEL.match(label) for label in text.split("."))


def is_dns_label(text: str) -> bool:
    """True for a single lower-case DNS label (a namespace, for instance)."""
    return bool(_DNS_LABEL.match(text))


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``text`` spells, or None when it is not one."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class HostPort:
    """A parsed ``HOST:PORT``; IPv6 hosts are kept without brackets."""

    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        ip = parse_ip(self.host)
        return ip is not None and ip.is_loopback

    def with_port(self, port: int) -> HostPort:
        return HostPort(self.host, port)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_host_port(text: str, *, what: str, allow_port_zero: bool = False) -> HostPort:
    """Parse ``HOST:PORT`` (``[V6]:PORT`` for IPv6); ``what`` names the option in errors.

    HOST must be an IP address or a DNS name. Port 0 ("pick a free port") is
    only accepted for addresses we listen on.
    """
    if not isinstance(text, str) or not text:
        raise AddressError(f"{what}: expected HOST:PORT, got {text!r}")
    if "://" in text:  # a URL pasted where an address goes
        bare = text.partition("://")[2].split("/", 1)[0]
        raise AddressError(
            f"{what}: expected HOST:PORT without a scheme, got {text!r} (write {bare})"
        )
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise AddressError(f"{what}: expected [IPV6]:PORT, got {text!r}")
        host, port_text = text[1:end], text[end + 2 :]
        ip = parse_ip(host)
        if ip is None or ip.version != 6:
            raise AddressError(f"{what}: {host!r} inside brackets is not an IPv6 address")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise AddressError(f"{what}: expected HOST:PORT, got {text!r}")
        if ":" in host:
            raise AddressError(f"{what}: write IPv6 addresses in brackets, as [{host}]:PORT")
        if parse_ip(host) is None and not is_dns_name(host.lower()):
            raise AddressError(f"{what}: {host!r} is neither an IP address nor a DNS name")
    if not port_text.isdigit():
        raise AddressError(f"{what}: port {port_text!r} is not a number")
    port = int(port_text)
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise AddressError(f"{what}: port {port} is outside {low}..65535")
    return HostPort(host, port)
