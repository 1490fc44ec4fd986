"""Which `Host` the status page answers to, and what "same origin" means for its requests.

DNS rebinding: a page on `http://evil.example:8080` whose name is re-pointed at the agent's
address makes the plant's browser send `Host: evil.example:8080` to the agent, and read the
answers as its own. The page therefore answers only to the names it is really reached under:
`localhost`, this machine's host name, the listen address if it is a name, and the names the
plant lists in `status.allowed_hosts`. An IP address in `Host` is always accepted: a browser
sends one only when the page it shows was loaded from that very address, so no other site's
script can be behind it (a rebinding always goes through a name the attacker controls). That
keeps the page reachable by address behind NAT and port forwarding (containers), where the
address the browser uses is not one of this machine's.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


class Origin(NamedTuple):
    """Scheme, host and port: what two URLs must share to be the same origin."""

    scheme: str
    host: str
    port: int


def normal_host(name: str) -> str:
    """A host name as compared: lower case, without a trailing dot or IPv6 brackets."""
    return name.strip().lower().removesuffix(".").removeprefix("[").removesuffix("]")


def is_ip(host: str) -> bool:
    """Whether `host` (normalised) is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_and_port_text(value: str) -> tuple[str, str | None] | None:
    """Split `name[:port]` or `[v6][:port]`; the port text is None when absent."""
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or not is_ip(inside) or (rest and not rest.startswith(":")):
            return None
        return inside, rest[1:] if rest else None
    host, colon, port_text = value.partition(":")
    if ":" in port_text:  # an IPv6 address without brackets is not a valid Host
        return None
    return host, port_text if colon else None


def split_host(value: str) -> tuple[str, int | None] | None:
    """`(host, port)` of a `Host` header value (`name`, `name:8080`, `[::1]:8080`); None if bad."""
    parts = _host_and_port_text(value)
    if parts is None:
        return None
    host, port_text = normal_host(parts[0]), parts[1]
    valid_host = bool(host) and (is_ip(host) or HOST_NAME.match(host) is not None)
    if port_text is None:
        return (host, None) if valid_host else None
    if not valid_host or not port_text.isdigit() or len(port_text) > 5:  # noqa: PLR2004
        return None
    port = int(port_text)
    return (host, port) if port <= 65535 else None  # noqa: PLR2004


def request_origin(scheme: str, host_header: str) -> Origin | None:
    """The origin a request was addressed to: its scheme, and host and port from `Host`."""
    parsed = split_host(host_header)
    if parsed is None or scheme not in _DEFAULT_PORTS:
        return None
    host, port = parsed
    return Origin(scheme, host, port or _DEFAULT_PORTS[scheme])


def url_origin(url: str) -> Origin | None:
    """The origin of an `Origin` or `Referer` header value; None if it has none (`null`)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return Origin(parts.scheme, normal_host(parts.hostname), port or _DEFAULT_PORTS[parts.scheme])


def machine_names() -> set[str]:
    """This machine's host name, and its first label when it is a dotted name.

    `socket.gethostname()` only: resolving the fully qualified name could wait on DNS at start.
    """
    name = normal_host(socket.gethostname())
    return {name, name.partition(".")[0]} if name else set()


class HostPolicy:
    """The names the page answers to (see the module doc); IP addresses are always accepted."""

    def __init__(self, names: Iterable[str]) -> None:
        self._names = frozenset(normal_host(n) for n in names)

    @classmethod
    def default(cls, listen_host: str, allowed: Iterable[str] = ()) -> HostPolicy:
        """`localhost`, this machine's name, the listen address if a name, and `allowed`."""
        names = {"localhost", *machine_names(), *allowed}
        if listen_host and not is_ip(normal_host(listen_host)):
            names.add(listen_host)
        return cls(names)

    @property
    def names(self) -> frozenset[str]:
        """The host names accepted besides IP addresses."""
        return self._names

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this `Host` header may be answered."""
        if not host_header:
            return False
        parsed = split_host(host_header)
        if parsed is None:
            return False
        host = parsed[0]
        return host in self._names or is_ip(host)
