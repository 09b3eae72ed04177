"""Logging set-up for the entrypoints, with tokens redacted from every line (uvicorn's included)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

from locstream.settings import LogSettings

# Query parameters are judged once percent-decoded, as Starlette's parser decodes them: ``?%74oken=`` is ``token``
# to the edge, so it must be to the redaction too. Any parameter whose name mentions a token (``token``,
# ``access_token``, ``TOKEN``, ``id_token``...), that is a device key, or whose value is a JWT is redacted, read by the
# service or not.
_QUERY_PARAMETER = re.compile(r"(?<=[?&])([^=&\s\"'#]+)=([^&\s\"'#]*)")
# Anything shaped like a JWT (base64url of '{"' twice, then a signature), wherever it is in a line.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


# A tracking app's device key is its device identifier (the OsmAnd protocol: ``?id=``).
_KEY_PARAMETERS = frozenset({"id", "deviceid", "device_id", "key"})


def _redact_parameter(match: re.Match[str]) -> str:
    name = unquote_plus(match[1]).lower()
    if "token" in name or name in _KEY_PARAMETERS or _JWT.search(unquote_plus(match[2])):
        return f"{match[1]}=[redacted]"
    return match[0]


def redact(message: str) -> str:
    """``message`` with every token-carrying query parameter (however its name is percent-encoded) and every
    JWT-shaped string replaced by ``[redacted]``."""
    if "=" in message:
        message = _QUERY_PARAMETER.sub(_redact_parameter, message)
    return _JWT.sub("[redacted]", message) if "eyJ" in message else message


class RedactTokens(logging.Filter):
    """Redacts tokens from a record's rendered message (``redact``): uvicorn logs WebSocket paths with queries."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class RepeatsThrottled(logging.Filter):
    """Lets a message template through once per ``interval`` seconds, saying how many were held back.

    While the broker is down aiokafka logs the same connection errors in a tight loop (aiokafka #1155): measured
    50,000 lines in 20 s from one ingest process during a broker restart.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval, self.clock = interval, clock
        self._last: dict[tuple[str, object], tuple[float, int]] = {}  # template -> (last let through, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, record.msg), self.clock()
        last, held = self._last.get(key, (None, 0))
        if last is not None and now - last < self.interval:
            self._last[key] = (last, held + 1)
            return False
        self._last[key] = (now, 0)
        if held and last is not None:
            record.msg = f"{record.getMessage()} (and {held} more like it in the last {now - last:.0f} s)"
            record.args = None
        return True


class TransientKafkaErrorsAsInfo(logging.Filter):
    """aiokafka logs a retriable error of finding the group coordinator at ERROR, though it retries by itself: on a
    fresh broker the coordinator is elected a second after start, and ``locstream dev`` greeted every newcomer with
    an ERROR line. Retriable ones are shown as INFO; the others stay errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.ERROR
            and record.name == "aiokafka.consumer.group_coordinator"
            and isinstance(record.args, tuple)
            and any(getattr(arg, "retriable", False) for arg in record.args)
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg} (retriable: retrying)"
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the ``connection_id`` a connection's
    lines carry (``ws_edge/session.py``); an exception goes in ``exc_info`` as text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        connection_id = getattr(record, "connection_id", None)
        if connection_id is not None:
            line["connection_id"] = connection_id
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(settings: LogSettings | None = None) -> None:
    settings = settings or LogSettings()
    logging.basicConfig(level=settings.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.format == "json":
        formatter = JsonLines()
        formatter.converter = time.gmtime
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)
    redact_tokens, transient = RedactTokens(), TransientKafkaErrorsAsInfo()
    for handler in logging.getLogger().handlers:  # on the handlers: every logger's records pass them
        handler.addFilter(transient)
        handler.addFilter(redact_tokens)
    aiokafka = logging.getLogger("aiokafka")
    aiokafka.setLevel(logging.WARNING)
    throttle = RepeatsThrottled()
    for handler in logging.getLogger().handlers:  # records of aiokafka's sub-loggers pass the root's handlers
        handler.addFilter(lambda record: not record.name.startswith("aiokafka") or throttle.filter(record))
    logging.getLogger("httpx").setLevel(logging.WARNING)
