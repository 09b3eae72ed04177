"""Reading a request body: its type and size first, then strict decoding, with a message naming the field.

The size is enforced while the body streams in, so a client cannot make the API buffer more than
``LOCSTREAM_PRODUCERS_MAX_BODY_BYTES`` however it frames the request, and so is a deadline
(``LOCSTREAM_PRODUCERS_BODY_TIMEOUT_SECONDS``): a client that trickles its body does not hold the request for ever.
A client that goes away mid-body is normal on mobile networks: one log line, no traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from typing import Any, TypeVar

import msgspec
from fastapi import Request
from starlette.requests import ClientDisconnect

from locstream.bounded_json import MAX_DEPTH

T = TypeVar("T")

log = logging.getLogger(__name__)

_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


class BodyError(Exception):
    """A request body that cannot be taken; ``status`` is 400, 408, 413, 415 or 422 and ``message`` names the
    field. ``close``: the connection is to be closed after the answer (the rest of the body may still come)."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


async def read_json(request: Request, max_bytes: int, within_seconds: float = 30.0) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise BodyError(415, f"body: Content-Type must be application/json, not {content_type or 'missing'!r}")
    return await read_body(request, max_bytes, within_seconds)


async def read_body(request: Request, max_bytes: int, within_seconds: float = 30.0) -> bytes:
    """The body, whatever its type, within ``max_bytes`` and ``within_seconds``; ``BodyError`` otherwise."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyError(413, f"body: {int(declared)} bytes, at most {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise BodyError(413, f"body: more than {max_bytes} bytes", close=True)
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyError(408, f"body: not complete within {within_seconds:g} s ({size} bytes came)", close=True) from exc
    except ClientDisconnect as exc:
        client = request.client.host if request.client else "?"
        log.info("%s went away before sending its whole body (%d bytes came); nothing recorded", client, size)
        raise BodyError(400, "body: the client closed the connection before sending all of it") from exc
    return b"".join(chunks)


def field_message(error: msgspec.ValidationError, prefix: str = "") -> str:
    """``Expected `float`, got `str` - at `$.latitude``` -> ``latitude: Expected `float`, got `str```."""
    text = str(error)
    match = _PATH.search(text)
    if match is None:
        return f"{prefix or 'body'}: {text}"
    path = (prefix + match["path"]).lstrip(".") or "body"
    return f"{path}: {text[: match.start()]}"


_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode(raw: bytes, type_: type[T], prefix: str = "") -> T:
    """Strictly decode ``raw``; a ``BodyError(422)`` names the offending field."""
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.json.Decoder(type_, strict=True)
    try:
        decoded: T = decoder.decode(raw)
        return decoded
    except msgspec.ValidationError as exc:
        raise BodyError(422, field_message(exc, prefix)) from exc
    except msgspec.DecodeError as exc:
        raise BodyError(422, _malformed(raw, str(exc), prefix)) from exc
    except RecursionError as exc:  # msgspec recurses per level: a body nested ~1,000 deep (in ``metadata``)
        raise BodyError(422, f"{prefix or 'body'}: JSON nested deeper than {MAX_DEPTH} levels") from exc


def _malformed(raw: bytes, reason: str, prefix: str) -> str:
    """Name the field when the JSON is malformed only by a NaN or Infinity literal (which JSON does not have)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return f"{prefix or 'body'}: {reason}"
    path = _non_finite(value, prefix)
    return f"{path}: NaN and Infinity are not numbers in JSON" if path else f"{prefix or 'body'}: {reason}"


def _non_finite(value: Any, path: str) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path.lstrip(".") or "body"
    if isinstance(value, dict):
        items: Any = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", item) for i, item in enumerate(value))
    else:
        return None
    for item_path, item in items:
        found = _non_finite(item, item_path)
        if found:
            return found
    return None
