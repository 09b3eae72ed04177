"""What the derived-facts processor's tests read of its runs: the offsets a data dir's store holds, whether stores
have caught up with a topic, the derived events among a topic's, and a processor's metric."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from locstream.settings import KafkaSettings
from schemas.events import DERIVED_EVENTS, Derived, Event
from tests.support.kafka_io import end_offsets
from tests.support.stack import Service


def stored_offsets(data_dir: Path) -> dict[int, int]:
    """The next offset per partition the processor's store in ``data_dir`` holds (read-only; none yet: empty)."""
    path = data_dir / "geofencer.sqlite3"
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT partition, next_offset FROM offsets").fetchall())


async def caught_up(data_dirs: list[Path], kafka: KafkaSettings) -> bool:
    """Every record of the topic read and stored by one of the stores, its own derived events included."""
    ends = await end_offsets(kafka)
    stored = [stored_offsets(data_dir) for data_dir in data_dirs]
    return all(max(s.get(p, 0) for s in stored) >= end for p, end in ends.items() if end > 0)


def derived(events: list[Event]) -> list[Derived]:
    return [e for e in events if isinstance(e, DERIVED_EVENTS)]


async def metric(service: Service, name: str) -> float:
    """The value of the (unlabelled) metric ``name`` a processor exports now; 0 before it has one."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{service.url}/metrics", headers=service.admin_headers)).text
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0
