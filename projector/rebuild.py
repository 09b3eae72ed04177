"""``locstream projector rebuild``: replay the topic from its earliest offset into a fresh table generation.

The live projector keeps serving (and writing) the current generation meanwhile. When the rebuild has read up
to the end offsets the topic had when it started, it switches the current generation in one transaction; the
live projector notices at its next batch and continues from the offsets stored with the new tables. Progress
(events, rate, ETA) goes to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from domain.position import Position
from locstream.gc_tuning import tune_for_batches
from locstream.kafka import ensure_topic, make_consumer
from locstream.progress import Progress
from projector.backends import make_store
from projector.settings import ProjectorSettings
from schemas.events import FACT_EVENTS, Event, Fact, InvalidEventError, decode_event


async def rebuild(settings: ProjectorSettings, out: TextIO = sys.stderr) -> dict[str, Any]:
    """Rebuild into a new generation and switch to it; returns a summary."""
    kafka = settings.kafka
    partitions = await ensure_topic(kafka)
    store = make_store(settings.data, kafka.topic)
    await store.open()
    tune_for_batches(settings.gc_gen0_threshold)
    consumer = make_consumer(kafka, group_id=None, max_poll_records=settings.max_batch)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        progress = Progress("rebuild", total=sum(ends[tp] - begins[tp] for tp in partitions), out=out)
        generation = await store.new_generation()
        remaining = {tp for tp in partitions if ends[tp] > begins[tp]}
        progress.start()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=settings.max_batch)
            events: list[tuple[Event, Position]] = []
            facts: list[tuple[Fact, Position]] = []
            next_offsets: dict[int, int] = {}
            count = 0
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    count += 1
                    try:
                        event = decode_event(record.value)
                    except InvalidEventError:
                        progress.skipped += 1  # the live projector already dead-lettered it
                    else:
                        if isinstance(event, FACT_EVENTS):
                            facts.append((event, Position(tp.partition, record.offset)))
                        else:
                            events.append((event, Position(tp.partition, record.offset)))
                    next_offsets[tp.partition] = record.offset + 1
                if next_offsets.get(tp.partition, 0) >= ends[tp]:
                    remaining.discard(tp)
            if next_offsets:
                await store.apply_batch(events, next_offsets, generation, facts)
            progress.advance(count)
        progress.advance(0, force=True)
        previous = await store.switch_generation(generation)
        await store.drop_generation(previous)
        elapsed = time.monotonic() - progress.began
        return {
            "generation": generation,
            "events": progress.done,
            "skipped": progress.skipped,
            "seconds": round(elapsed, 3),
            "events_per_second": round(progress.done / max(elapsed, 1e-9), 1),
        }
    finally:
        await consumer.stop()
        await store.close()
