"""Numbers written as text (query strings, form bodies), read strictly: ASCII decimal notation only.

Python's ``float`` and ``int`` (and pydantic's lax mode, which uses them) take ``6_5`` as 65, ``١٢`` (Arabic-Indic
digits) as 12, and ``nan`` and ``inf``: an OsmAnd ``lat=6_5`` was stored as 65.0. Here a number is an optional sign,
ASCII digits with at most one point, and an optional exponent, and it must be finite. Pure.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_WHOLE = re.compile(r"[+-]?[0-9]{1,18}")


def decimal(text: str) -> float:
    """``text`` as a finite number; ``ValueError`` for anything but plain decimal notation."""
    if _DECIMAL.fullmatch(text) is None:
        raise ValueError(f"{text[:40]!r} is not a decimal number")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]!r} is not a finite number")
    return number


def whole(text: str) -> int:
    """``text`` as an integer; ``ValueError`` for anything but an optional sign and ASCII digits."""
    if _WHOLE.fullmatch(text) is None:
        raise ValueError(f"{text[:40]!r} is not a whole number")
    return int(text)


def _strict_text(value: Any, parse: Any) -> Any:
    return parse(value) if isinstance(value, str) else value


# Query parameters: pydantic's own bounds (ge, le...) still apply after these.
DecimalText = Annotated[float, BeforeValidator(lambda value: _strict_text(value, decimal))]
WholeText = Annotated[int, BeforeValidator(lambda value: _strict_text(value, whole))]
