"""One contract for every projection backend, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from domain.position import Position
from domain.projection import Offline, Stay, fold
from launch.postgres_local import fresh_database
from projector.postgres_store import PostgresProjectionStore
from projector.sqlite_store import SqliteProjectionStore
from projector.store import GenerationChangedError, ProjectionStore, StayQuery
from schemas.events import (
    Event,
    FixQuality,
    LocationRecorded,
    RetractionData,
    StayRetracted,
    StopData,
    StopEnded,
    StopStarted,
    TechnicianUpdated,
)
from tests.support.events import T0, location, offline, online, stay
from tests.support.events import profile as technician_profile


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProjectionStore]:
    """SQLite (in ``make unit``: no server) or a fresh database on the suite's PostgreSQL server."""
    async with AsyncExitStack() as stack:
        backend: ProjectionStore
        if request.param == "sqlite":
            backend = SqliteProjectionStore(tmp_path / "p.sqlite3", "topic")
        else:
            server: str = request.getfixturevalue("postgres_server")
            backend = PostgresProjectionStore(await stack.enter_async_context(fresh_database(server)), "topic")
        await backend.open()
        stack.push_async_callback(backend.close)
        yield backend


def fix(
    seconds: float,
    lat: float,
    tech: str = "t1",
    tenant: str = "a",
    event_id: uuid.UUID | None = None,
    received: datetime = T0,
) -> LocationRecorded:
    return location(
        tenant,
        tech,
        T0 + timedelta(seconds=seconds),
        lat,
        2.5,
        received_at=received,
        event_id=event_id,
        heading=90.0,
        activity="driving",
        accuracy_meters=4.0,
    )


def profile(seconds: float, tech: str = "t1", name: str | None = None, status: str | None = None) -> TechnicianUpdated:
    return technician_profile("a", tech, T0 + timedelta(seconds=seconds), name, status, received_at=T0)


def log_of(*events: Event, partition: int = 2, start: int = 0) -> list[tuple[Event, Position]]:
    return [(event, Position(partition, start + i)) for i, event in enumerate(events)]


async def states(store: ProjectionStore) -> dict[tuple[str, str], object]:
    return {(s.tenant_id, s.technician_id): s for s in (await store.snapshot()).states}


async def test_a_batch_and_its_offsets_are_stored_together_and_equal_the_replay(store: ProjectionStore) -> None:
    log = log_of(
        fix(0, 1.5), profile(1, name="Ada", status="on_job"), profile(0, tech="t2", status="off"), fix(-30, 9.0)
    )  # a late fix: history, not position
    g = await store.generation()
    result = await store.apply_batch(log, {2: 4}, g)
    assert (result.applied, result.duplicates) == (4, 0)
    snapshot = await store.snapshot()
    assert snapshot.offsets == {2: 4}
    assert {(s.tenant_id, s.technician_id): s for s in snapshot.states} == fold(log)
    assert await store.stored_offsets() == {2: 4}


async def test_a_retried_event_id_is_a_no_op_and_offsets_never_move_back(store: ProjectionStore) -> None:
    g = await store.generation()
    original = fix(10, 1.0)
    newer = fix(10, 2.0)  # same device time, later in the log: wins the tie
    await store.apply_batch(log_of(original, newer), {2: 2}, g)
    retry = fix(10, 1.0, event_id=original.event_id)  # the client's retry, appended again later
    result = await store.apply_batch(log_of(retry, start=2), {2: 3}, g)
    assert (result.applied, result.duplicates) == (0, 1)
    snapshot = await store.snapshot()
    assert [s.fix.latitude for s in snapshot.states if s.fix] == [2.0]
    await store.apply_batch([], {2: 1}, g)  # an old batch committing late (rebalance) must not rewind
    assert await store.stored_offsets() == {2: 3}
    history = await store.history("a", "t1", None, None, 10)
    assert history is not None and len(history) == 2


async def test_records_below_the_stored_offsets_are_never_applied_again_even_once_pruned(
    store: ProjectionStore,
) -> None:
    """A seek that raced a commit redelivers records already applied; the offsets, not the history, refuse them."""
    g = await store.generation()
    older, newer = fix(0, 1.0), fix(10, 2.0)
    await store.apply_batch(log_of(older, newer), {2: 2}, g)
    assert await store.prune_history(T0 + timedelta(days=1)) == 2  # past retention: their event ids are gone
    redelivered = log_of(older, newer, fix(5, 3.0), start=0)  # offsets 0 and 1 again, then a new late fix at 2
    result = await store.apply_batch(redelivered, {2: 3}, g)
    assert (result.applied, result.duplicates) == (1, 2)
    assert [p.latitude for p in await store.history("a", "t1", None, None, 10) or []] == [3.0]
    assert [s.fix.latitude for s in (await store.snapshot()).states if s.fix] == [2.0]
    assert await store.stored_offsets() == {2: 3}


async def test_an_event_id_reused_for_another_tenant_technician_or_time_is_another_event(
    store: ProjectionStore,
) -> None:
    g = await store.generation()
    original = fix(0, 1.0)
    reused = [
        fix(0, 2.0, tenant="b", event_id=original.event_id),
        fix(0, 3.0, tech="t2", event_id=original.event_id),
        fix(5, 4.0, event_id=original.event_id),
    ]
    result = await store.apply_batch(log_of(original, *reused, fix(0, 1.0, event_id=original.event_id)), {2: 5}, g)
    assert (result.applied, result.duplicates) == (4, 1)
    later = await store.apply_batch(log_of(*reused, start=5), {2: 8}, g)  # each retried once more
    assert (later.applied, later.duplicates) == (0, 3)
    located = {(s.tenant_id, s.technician_id): s.fix.latitude for s in (await store.snapshot()).states if s.fix}
    assert located == {("a", "t1"): 4.0, ("b", "t1"): 2.0, ("a", "t2"): 3.0}
    assert [p.latitude for p in await store.history("a", "t1", None, None, 10) or []] == [4.0, 1.0]


async def test_a_failed_batch_stores_neither_rows_nor_history_nor_offsets(store: ProjectionStore) -> None:
    g = await store.generation()
    bad_offsets: dict[int, int] = {2: None}  # type: ignore[dict-item]  # violates NOT NULL after the rows
    with pytest.raises(Exception):  # noqa: B017 - each driver raises its own integrity error
        await store.apply_batch(log_of(fix(0, 1.0)), bad_offsets, g)
    assert (await store.snapshot()).states == [] and await store.stored_offsets() == {}
    assert await store.history("a", "t1", None, None, 10) is None


async def test_history_is_newest_first_bounded_by_time_and_limit_and_tenant_scoped(store: ProjectionStore) -> None:
    g = await store.generation()
    await store.apply_batch(log_of(*(fix(s, float(s)) for s in range(10)), profile(20, status="x")), {2: 11}, g)
    everything = await store.history("a", "t1", None, None, 100)
    assert everything is not None and [p.latitude for p in everything] == [float(s) for s in range(9, -1, -1)]
    window = await store.history("a", "t1", T0 + timedelta(seconds=3), T0 + timedelta(seconds=6), 100)
    assert window is not None and [p.latitude for p in window] == [5.0, 4.0, 3.0]
    assert [p.latitude for p in await store.history("a", "t1", None, None, 2) or []] == [9.0, 8.0]
    assert window[0].recorded_at == T0 + timedelta(seconds=5)
    assert await store.history("other-tenant", "t1", None, None, 10) is None


async def test_flagged_fixes_are_kept_with_their_reasons_and_listed_by_the_quality_filter(
    store: ProjectionStore,
) -> None:
    g = await store.generation()
    judged = FixQuality()

    def at(seconds: int, north_m: float) -> LocationRecorded:
        return location("a", "t1", T0 + timedelta(seconds=seconds), 6.5 + north_m / 111_195, 3.0, quality=judged)

    start, spike, back = at(0, 0), at(5, 1_000), at(10, 10)  # 1 km in 5 s: a jump; then 10 m in 10 s
    zero = location("a", "t1", T0 + timedelta(seconds=15), 0.0, 0.0, quality=FixQuality(flags=("zero",)))
    await store.apply_batch(log_of(start, spike), {2: 2}, g)
    await store.apply_batch(log_of(back, zero, start=2), {2: 4}, g)  # judged against the state the first stored
    flagged = await store.history("a", "t1", None, None, 10, "flagged")
    assert flagged is not None
    assert [(p.event_id, p.quality) for p in flagged] == [
        (str(zero.event_id), ["zero", "jump"]),
        (str(spike.event_id), ["jump"]),
    ]
    good = await store.history("a", "t1", None, None, 10)
    assert good is not None and [(p.event_id, p.quality) for p in good] == [
        (str(back.event_id), []),
        (str(start.event_id), []),
    ]
    assert len(await store.history("a", "t1", None, None, 10, "all") or []) == 4
    (state,) = (await store.snapshot()).states
    assert state.fix is not None and state.fix.recorded_at == back.recorded_at  # the last good fix
    only_flagged = location("a", "t2", T0, 0.0, 0.0, quality=FixQuality(flags=("zero",)))
    await store.apply_batch(log_of(only_flagged, start=4), {2: 5}, g)
    assert await store.history("a", "t2", None, None, 10) == []  # known, with nothing good to list
    assert [s.fix for s in (await store.snapshot()).states if s.technician_id == "t2"] == [None]


async def test_history_is_pruned_by_device_time(store: ProjectionStore) -> None:
    g = await store.generation()
    old, recent = fix(-8 * 86_400, 1.0), fix(1, 2.0)
    await store.apply_batch(log_of(old, recent), {2: 2}, g)
    assert await store.prune_history(T0 - timedelta(days=7)) == 1
    assert [p.latitude for p in await store.history("a", "t1", None, None, 10) or []] == [2.0]


async def test_a_new_generation_is_filled_then_switched_to_atomically(store: ProjectionStore) -> None:
    old = await store.generation()
    await store.apply_batch(log_of(fix(0, 1.0)), {2: 1}, old)
    new = await store.new_generation()
    assert new == old + 1
    await store.apply_batch(log_of(fix(0, 1.0), fix(5, 7.0)), {2: 2}, new)
    assert [s.fix.latitude for s in (await store.snapshot()).states if s.fix] == [1.0]  # readers see the old one
    assert await store.switch_generation(new) == old
    snapshot = await store.snapshot()
    assert snapshot.generation == new and snapshot.offsets == {2: 2}
    assert [s.fix.latitude for s in snapshot.states if s.fix] == [7.0]
    with pytest.raises(GenerationChangedError):  # a projector still writing the old generation is told
        await store.apply_batch(log_of(fix(9, 9.0), start=2), {2: 3}, old)
    await store.drop_generation(old)
    assert await store.stored_offsets(new) == {2: 2}
    with pytest.raises(GenerationChangedError):  # told so even once the old tables are gone
        await store.apply_batch(log_of(fix(9, 9.0), start=2), {2: 3}, old)


def _stop(kind: type[StopStarted] | type[StopEnded], started: float, tech: str = "t1", tenant: str = "a") -> Event:
    ended = None if kind is StopStarted else T0 + timedelta(seconds=started + 600)
    return kind(
        event_id=uuid.uuid4(),
        tenant_id=tenant,
        technician_id=tech,
        recorded_at=T0 + timedelta(seconds=started + 600),
        received_at=T0,
        data=StopData(
            started_at=T0 + timedelta(seconds=started),
            ended_at=ended,
            latitude=6.5,
            longitude=3.3,
            duration_seconds=600.0,
            fixes=12,
            job_id="job-1",
        ),
    )


def _retracted(started: float, tech: str = "t1") -> Event:
    return StayRetracted(
        event_id=uuid.uuid4(),
        tenant_id="a",
        technician_id=tech,
        recorded_at=T0 + timedelta(seconds=started + 900),
        received_at=T0,
        data=RetractionData(subject="stop", started_at=T0 + timedelta(seconds=started)),
    )


async def test_a_stop_is_one_row_holding_its_last_event_and_a_retraction_deletes_it(store: ProjectionStore) -> None:
    g = await store.generation()
    derived = log_of(
        _stop(StopStarted, 0),
        _stop(StopStarted, 100, tech="t2"),
        _stop(StopEnded, 0),  # the same stop, ended: replaces the row
        _stop(StopStarted, 2_000),
        _retracted(2_000),  # a late fix showed it was no stop
        _stop(StopStarted, 50, tenant="b"),
    )
    await store.apply_batch([], {2: 6}, g, derived)  # type: ignore[arg-type]

    def query(**changes: object) -> StayQuery:
        base = {"tenant_id": "a", "subject": "stop", "start": T0, "end": T0 + timedelta(hours=1), "limit": 10}
        return StayQuery(**(base | changes))  # type: ignore[arg-type]

    found = await store.stays(query())
    assert [(r.technician_id, r.kind, r.started_at) for r in found] == [
        ("t1", "stop_ended", T0),
        ("t2", "stop_started", T0 + timedelta(seconds=100)),
    ]
    assert found[0].ended_at == T0 + timedelta(seconds=600) and found[0].data["job_id"] == "job-1"
    assert found[1].ended_at is None
    assert [r.technician_id for r in await store.stays(query(technician_id="t2"))] == ["t2"]
    assert [r.technician_id for r in await store.stays(query(limit=1, after=(T0, "t1")))] == ["t2"]
    assert await store.stays(query(subject="trip")) == []
    assert await store.stays(query(start=T0 + timedelta(seconds=1))) == found[1:]  # by start time
    assert [r.technician_id for r in await store.stays(query(tenant_id="b"))] == ["t1"]
    # A processor that crashed appends the same events again: the rows end the same.
    await store.apply_batch([], {2: 12}, g, log_of(*(event for event, _ in derived), start=6))  # type: ignore[arg-type]
    assert await store.stays(query()) == found


async def test_the_derived_facts_mark_the_row_with_the_batch_and_a_snapshot_reads_them_back(
    store: ProjectionStore,
) -> None:
    """What the edge bootstraps: a technician's motion and presence, written with its position and the offsets."""
    g = await store.generation()
    parked = T0 - timedelta(minutes=20)
    silent_after = fix(0, 1.0)
    events = log_of(silent_after, fix(0, 2.0, tech="t2"))
    derived = log_of(
        stay("stop_started", "a", "t1", parked), offline("a", "t1", silent_after.recorded_at), start=len(events)
    )
    await store.apply_batch(events, {2: 4}, g, derived)  # type: ignore[arg-type]
    states = {s.technician_id: s for s in (await store.snapshot()).states}
    assert states["t1"].stay == Stay("stop", parked, None)
    assert states["t1"].offline == Offline(silent_after.recorded_at, "silent")
    assert states["t2"].stay is None and states["t2"].offline is None
    assert states == {s.technician_id: s for s in fold([*events, *derived]).values()}  # the log's own rule
    # Heard again (a newer fix) and the stop ended: one batch changes both.
    back = log_of(fix(60, 1.0), start=4)
    left = log_of(stay("stop_ended", "a", "t1", parked, T0 + timedelta(seconds=30)), start=5)
    await store.apply_batch(back, {2: 6}, g, left)  # type: ignore[arg-type]
    again = await store.current("a", "t1")
    assert again is not None and again.offline is None
    assert again.stay == Stay("stop", parked, T0 + timedelta(seconds=30))


async def test_an_offline_period_ended_by_its_online_keeps_what_its_start_said(store: ProjectionStore) -> None:
    g = await store.generation()
    seen = T0 + timedelta(seconds=30)
    said = offline("a", "t1", seen, silent_seconds=612.5)
    await store.apply_batch([], {2: 1}, g, log_of(said))  # type: ignore[arg-type]
    await store.apply_batch([], {2: 2}, g, log_of(online("a", "t1", seen, seen + timedelta(hours=1)), start=1))  # type: ignore[arg-type]
    query = StayQuery(tenant_id="a", subject="offline", start=T0, end=T0 + timedelta(hours=2), limit=10)
    (period,) = await store.stays(query)
    assert period.kind == "technician_online" and period.ended_at == seen + timedelta(hours=1)
    assert period.data["silent_seconds"] == 612.5 and period.data["reason"] == "silent"
