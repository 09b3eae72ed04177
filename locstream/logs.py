"""Logging set-up for the entrypoints, with tokens redacted from every line (uvicorn's included)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable

from locstream.settings import LogSettings

_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])(?:token|access_token)=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Replaces ``token=...`` in a record's rendered message: uvicorn logs WebSocket paths with queries."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN_IN_QUERY.sub(r"\1[redacted]", message)
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


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the ``connection_id`` a connection's
    ``LoggerAdapter`` adds (``ws_edge/session.py``); an exception goes in ``exc_info`` as text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }  # fmt: skip
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
    redact = RedactTokens()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(redact)
    aiokafka = logging.getLogger("aiokafka")
    aiokafka.setLevel(logging.WARNING)
    throttle = RepeatsThrottled()
    for handler in logging.getLogger().handlers:  # records of aiokafka's sub-loggers pass the root's handlers
        handler.addFilter(lambda record: not record.name.startswith("aiokafka") or throttle.filter(record))
    logging.getLogger("httpx").setLevel(logging.WARNING)
