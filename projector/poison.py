"""Poison records: classified, counted, copied to the dead-letter topic, and skipped (never blocking a partition)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Poison:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str  # undecodable | unknown_type | unsupported_schema_version | invalid
    detail: str


def classify(error: ValidationError) -> str:
    kinds = {err["type"] for err in error.errors()}
    if "json_invalid" in kinds or "json_type" in kinds:
        return "undecodable"
    if "union_tag_invalid" in kinds or "union_tag_not_found" in kinds:
        return "unknown_type"
    if any("schema_version" in loc for err in error.errors() for loc in map(str, err["loc"])):
        return "unsupported_schema_version"
    return "invalid"


def poison_of(record: Any, partition: int, error: ValidationError) -> Poison:
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False)[:3])
    poison = Poison(partition, record.offset, record.key, record.value, classify(error), detail[:500])
    log.warning("dead-lettering record at partition %d offset %d (%s): %s", partition, record.offset,
                poison.reason, poison.detail)  # fmt: skip
    return poison


def dlq_headers(poison: Poison, topic: str) -> list[tuple[str, bytes]]:
    return [
        ("locstream.error", poison.reason.encode()),
        ("locstream.detail", poison.detail.encode()),
        ("locstream.source", f"{topic}/{poison.partition}/{poison.offset}".encode()),
    ]
