"""JSON from clients, parsed with a bound on nesting. Pure.

Python's ``json`` and msgspec recurse once per level and raise ``RecursionError`` near a thousand levels: a
WebSocket message of 5,000 nested arrays killed the reader that parsed it, and a POST whose ``metadata`` nested 990
levels answered 500. orjson parses up to 1,024 levels without recursing in Python and refuses deeper input with a
plain ``JSONDecodeError``; what it returns is then measured without recursion either.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 32  # no message of the protocol, and no sensible ``metadata``, nests anywhere near this deep


class TooDeepError(ValueError):
    """JSON nested deeper than allowed; the message says how deep may be."""


def depth(value: Any) -> int:
    """Levels of arrays and objects in ``value`` (a scalar is 0, ``[]`` and ``{}`` are 1), without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``text`` parsed; ``ValueError`` when it is not JSON, ``TooDeepError`` (a ``ValueError``) when it nests
    deeper than ``max_depth``."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise TooDeepError(f"JSON nested deeper than {max_depth} levels") from exc
        raise ValueError(f"not JSON: {exc}") from exc
    if depth(value) > max_depth:
        raise TooDeepError(f"JSON nested deeper than {max_depth} levels")
    return value
