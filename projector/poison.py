"""Poison records: classified, counted, copied to the dead-letter topic, and skipped (never blocking a partition)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from schemas.events import InvalidEventError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Poison:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str  # undecodable | unknown_type | unsupported_schema_version | invalid
    detail: str


def poison_of(record: Any, partition: int, error: InvalidEventError) -> Poison:
    poison = Poison(partition, record.offset, record.key, record.value, error.reason, error.detail[:500])
    log.warning(
        "dead-lettering record at partition %d offset %d (%s): %s",
        partition,
        record.offset,
        poison.reason,
        poison.detail,
    )
    return poison


def dlq_headers(poison: Poison, topic: str) -> list[tuple[str, bytes]]:
    return [
        ("locstream.error", poison.reason.encode()),
        ("locstream.detail", poison.detail.encode()),
        ("locstream.source", f"{topic}/{poison.partition}/{poison.offset}".encode()),
    ]
