"""Where the server may call out to, pure: the guard against server-side request forgery (SSRF) that every outbound
call a tenant can aim (a webhook's URL) goes through (OWASP's SSRF Prevention Cheat Sheet; docs/alerts.md).

- ``check_url`` parses the URL: ``https`` only (``http`` when the operator allows it), no credentials in it, a host
  and a port, at most ``MAX_URL_LENGTH`` characters. An IPv4 address however it is spelt (``2130706433``,
  ``0x7f.1``, ``0177.0.0.1``: what ``inet_aton``, and so the system's resolver, would make of it) is taken as the
  address it is, never as a name to look up.
- ``refusal`` says why an address may not be called: anything that is not on the public internet (loopback,
  link-local with the cloud metadata address 169.254.169.254, private, shared CGNAT, unique-local, multicast,
  reserved, unspecified, broadcast) and the IPv6 forms that carry an IPv4 address inside (mapped, NAT64, 6to4,
  Teredo), unless the operator's allow-list holds it.
- ``resolve_pinned`` resolves a name once, through the resolver it is given, refuses it if **any** address it
  resolved to is refused, and answers the one address to connect to: the caller connects there (with the name for
  TLS and the ``Host`` header), so a second DNS answer can never differ from the checked one (DNS rebinding).

Nothing here opens a socket; tests/locstream_shared/test_outbound_policy.py holds every case with a resolver stub
that only answers.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

MAX_URL_LENGTH: Final = 2_048
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
# IPv6 ranges whose addresses carry an IPv4 address (NAT64 well-known and local-use, 6to4, Teredo): refused whole,
# since what they reach is decided by the IPv4 address inside, which a gateway on the way may take as local.
_CARRIES_IPV4: Final = tuple(
    ipaddress.IPv6Network(network) for network in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)
_IPV4_LITERAL: Final = frozenset("0123456789abcdefx.")


class RefusedTarget(ValueError):
    """A URL or an address the server will not call; ``reason`` says why, for the API's 422 and the delivery log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """A URL that passed ``check_url``: where to connect (``host``, ``port``; ``address`` when the host is an address
    literal) and what to ask for (``target``: the path and query)."""

    scheme: str
    host: str  # lower case, IDNA-encoded; an IPv6 address without brackets
    port: int
    target: str
    address: IPAddress | None  # the host as an address, when it is one (however it was spelt)

    @property
    def authority(self) -> str:
        """The ``Host`` header's value."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def check_url(url: str, *, allow_http: bool = False) -> Target:
    """``url`` as a ``Target``, or ``RefusedTarget`` saying what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(character) < 0x21 or character == "\\" for character in url):
        raise RefusedTarget("spaces, control characters or backslashes in the URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or (scheme == "http" and not allow_http):
        raise RefusedTarget("https only" if allow_http is False else "http or https only")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise RefusedTarget("credentials in the URL")
    host = parts.hostname
    if not host:
        raise RefusedTarget("no host")
    if port is not None and not 0 < port < 65_536:
        raise RefusedTarget("no such port")
    address = _address_literal(host)
    if address is None:
        host = _hostname(host)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(
        scheme, str(address) if address is not None else host, port or _DEFAULT_PORTS[scheme], target, address
    )


def _address_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, if it spells one: IPv6 (bracketed in the URL), or IPv4 in any form
    ``inet_aton`` takes (a name of digits, hex and dots only is an address or nothing)."""
    if ":" in host:
        if "%" in host:
            raise RefusedTarget("an IPv6 zone in the host")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise RefusedTarget("not an IPv6 address") from None
    lowered = host.lower().rstrip(".")
    if lowered and set(lowered) <= _IPV4_LITERAL and lowered[-1] not in "abcdefx":
        try:
            return ipaddress.IPv4Address(socket.inet_aton(lowered))  # parses only: no lookup
        except OSError:
            raise RefusedTarget("a host of digits that is no IPv4 address") from None
    return None


def _hostname(host: str) -> str:
    try:
        encoded = host.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise RefusedTarget("not a host name") from None
    labels = encoded.split(".")
    if not 0 < len(encoded) <= 253 or any(not 0 < len(label) <= 63 for label in labels):
        raise RefusedTarget("not a host name")
    if any(not (character.isalnum() or character in "-_") for label in labels for character in label):
        raise RefusedTarget("not a host name")
    return encoded


def refusal(address: IPAddress, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be called, or None: it may (on the public internet, or in the allow-list)."""
    if any(address in network for network in allow if network.version == address.version):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            why = refusal(mapped, allow)
            return f"an IPv4-mapped address: {why}" if why else None
        if any(address in network for network in _CARRIES_IPV4):
            return "an IPv6 address that carries an IPv4 address (NAT64, 6to4, Teredo)"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (the cloud metadata address is one)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if not address.is_global:
        return "not an address on the public internet (private, shared, reserved or documentation)"
    return None


async def resolve_pinned(target: Target, resolve: Resolver, allow: Sequence[IPNetwork] = ()) -> IPAddress:
    """The one address to connect to for ``target``: its literal address, or the first its name resolves to, once
    every address the name resolved to passed ``refusal``; ``RefusedTarget`` otherwise."""
    if target.address is not None:
        answers: Sequence[IPAddress] = (target.address,)
    else:
        answers = await resolve(target.host, target.port)
        if not answers:
            raise RefusedTarget(f"{target.host} resolves to no address")
    for address in answers:
        why = refusal(address, allow)
        if why is not None:
            raise RefusedTarget(f"{target.host} is {address}: {why}" if target.address is None else why)
    return answers[0]
