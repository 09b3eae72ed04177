"""The server's side of the WebSocket opening handshake (RFC 6455, section 4.2), for a protocol that takes a
connection over from uvicorn's HTTP protocol once its upgrade request is parsed (``locstream/serve.py``). Pure.

``UpgradeRequest`` is the request as the taking protocol sees it; ``refusal`` checks what RFC 6455 requires of it;
``switching_protocols`` and ``http_error`` are the bytes of the answer. ``deflate_accepted`` says whether the client
offered permessage-deflate (RFC 7692) in a form the server takes: without context takeover on either side
(``PER_MESSAGE_DEFLATE``), which lets a server compress a message once for many clients and keep no compressor per
connection.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.utils import accept_key

PER_MESSAGE_DEFLATE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
_REASONS = {400: "Bad Request", 403: "Forbidden", 426: "Upgrade Required", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """An HTTP/1.1 request head asking to upgrade to WebSocket. Header names are lower case; a repeated header's
    values are joined with ", " (RFC 9110, 5.3)."""

    method: str
    path: str  # percent-decoded, as ASGI's scope["path"]
    target: str  # as it came (path and query), for the access log (tokens are redacted there)
    query: dict[str, str]  # names and values percent-decoded; a repeated name keeps its last value
    headers: dict[str, str]
    client: str  # "host:port" of the peer, for logs

    @classmethod
    def parse(cls, method: str, target: bytes, headers: list[tuple[bytes, bytes]], client: str) -> UpgradeRequest:
        raw = target.decode("latin-1")
        parts = urlsplit(raw)
        joined: dict[str, str] = {}
        for name, value in headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            joined[key] = f"{joined[key]}, {text}" if key in joined else text
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return cls(method, unquote(parts.path), raw, query, joined, client)

    def header_list(self, name: str) -> list[str]:
        """A comma-separated header's items (``Sec-WebSocket-Protocol``, ``Connection``), stripped, none empty."""
        return [item.strip() for item in self.headers.get(name, "").split(",") if item.strip()]

    def cookies(self) -> dict[str, str]:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("cookie", ""))
        except CookieError:
            return {}
        return {name: morsel.value for name, morsel in cookie.items()}


def refusal(request: UpgradeRequest) -> tuple[int, str] | None:
    """The HTTP status and reason when ``request`` is not a valid WebSocket opening handshake, else None."""
    if request.method != "GET":
        return 400, "a WebSocket handshake is a GET"
    if "websocket" not in (item.lower() for item in request.header_list("upgrade")):
        return 400, "missing Upgrade: websocket"
    if "upgrade" not in (item.lower() for item in request.header_list("connection")):
        return 400, "missing Connection: Upgrade"
    if request.headers.get("sec-websocket-version") != "13":
        return 426, "only WebSocket version 13 is supported"
    try:
        if len(base64.b64decode(request.headers.get("sec-websocket-key", ""), validate=True)) != 16:
            return 400, "Sec-WebSocket-Key is not 16 bytes in base64"
    except binascii.Error:
        return 400, "Sec-WebSocket-Key is not base64"
    return None


def deflate_accepted(request: UpgradeRequest) -> bool:
    """Whether one of the client's permessage-deflate offers can be accepted as ``PER_MESSAGE_DEFLATE``: an offer
    whose parameters are valid after RFC 7692 (7.1), except one limiting the server's window below 15 bits (the
    server compresses with 15). An invalid offer is declined, not accepted loosely: the client may offer another."""
    for offer in request.header_list("sec-websocket-extensions"):
        name, *parameters = [part.strip() for part in offer.split(";")]
        if name.lower() == "permessage-deflate" and _deflate_parameters_valid(parameters):
            return True
    return False


_WINDOW_BITS = frozenset(str(bits) for bits in range(8, 16))  # "8" to "15", no sign, no leading zero


def _deflate_parameters_valid(parameters: list[str]) -> bool:
    seen: set[str] = set()
    for parameter in parameters:
        key, has_value, text = (part.strip() for part in parameter.partition("="))
        name, value = key.lower(), text.strip('"') if has_value else None
        if name in seen:
            return False
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return False
        elif name == "client_max_window_bits":  # the edge inflates with 15 bits: any client window fits
            if value is not None and value not in _WINDOW_BITS:
                return False
        elif name == "server_max_window_bits":
            if value != "15":
                return False
        else:
            return False
    return True


def switching_protocols(request: UpgradeRequest, subprotocol: str | None, extensions: str | None = None) -> bytes:
    """The 101 answer accepting ``request`` (``refusal`` returned None for it), naming ``subprotocol`` and
    ``extensions`` if any."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(request.headers['sec-websocket-key'])}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_error(status: int, reason: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP answer refusing the upgrade, its reason as the plain-text body; the connection closes."""
    body = reason.encode()
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: text/plain; charset=utf-8\r\n"
    if retry_after is not None:
        head += f"retry-after: {retry_after}\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode("latin-1") + body
