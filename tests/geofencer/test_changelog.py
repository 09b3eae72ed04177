"""The store's changelog (``geofencer/changelog.py``): a partition's rows rebuilt from the records its commits
appended, after compaction or before it, with or without the tombstones, are the rows of the store that wrote them;
what another store held of that partition goes, what it holds of the others stays."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from domain.geofencing import TechnicianFences
from domain.partitioning import tenant_partition
from domain.presence import PartitionClock, Presence
from domain.stays import Point, StayTrack
from geofencer.changelog import decode, encode
from geofencer.state import Changes, GeofencerState, StayBase, Write
from schemas.tenant_rules import StayRules
from tests.domain.test_stays import _a_day

RULES = StayRules()
PARTITIONS = 3
TENANTS = ["tenant-0", "tenant-1", "tenant-2", "tenant-5"]


def _rows(store: GeofencerState, partition: int) -> list[tuple[str, tuple[object, ...] | None]]:
    return sorted(((w.table, w.row) for w in store.partition_writes(partition)), key=repr)


def _write_a_day(store: GeofencerState) -> list[Write]:
    """Commits of a day of fixes for two technicians of each tenant, cut now and then; every write, as the changelog
    hands it back (encoded and decoded)."""
    rng = random.Random(32)
    days = {(tenant, f"tech-{i}"): _a_day(10 * t + i) for t, tenant in enumerate(TENANTS) for i in range(2)}
    tracks = {key: StayTrack() for key in days}
    written: list[Write] = []
    longest = max(len(points) for points in days.values())
    for batch, start in enumerate(range(0, longest, 41)):
        changes = Changes()
        fences = []
        for key, points in days.items():
            for point in points[start : start + 41]:
                if tracks[key].add(point, RULES) is not None:
                    changes.tail.add(key, point, tenant_partition(key[0], PARTITIONS))
                if tracks[key].prune(keep_seconds=1_800, max_fixes=300):
                    changes.bases.append(StayBase(*key, tracks[key].base, tracks[key].settled, tracks[key].horizon))
            if points[start : start + 41]:
                last = points[min(start + 40, len(points) - 1)]
                state = TechnicianFences({f"fence-{rng.randrange(3)}"} if rng.random() < 0.5 else set())
                state.latitude, state.longitude = last.latitude, last.longitude
                fences.append((key, state))
                partition = tenant_partition(key[0], PARTITIONS)
                changes.add_presence(key, Presence(float(batch), last.at, uuid.uuid4(), partition, rng.random() < 0.8))
        changes.technicians = GeofencerState.rows(fences)
        changes.set_clocks({p: PartitionClock(float(batch), 1_800_000_000.0 + batch) for p in range(PARTITIONS)})
        writes = store.writes(changes, {p: 41 * (batch + 1) for p in range(PARTITIONS)})
        store.apply(writes)
        written.extend(decode(*encode(write)) for write in writes)
    return written


def _compacted(log: list[Write], keep_tombstones: bool) -> list[Write]:
    """What compaction leaves: each key's last record, in log order (a tombstone too, until it is cleaned)."""
    last = {(write.table, write.key): index for index, write in enumerate(log)}
    kept = [log[index] for index in sorted(last.values())]
    return [write for write in kept if keep_tombstones or write.row is not None]


@pytest.mark.parametrize("compaction", ["none", "with-tombstones", "tombstones-cleaned"])
def test_a_partitions_rows_rebuilt_from_its_changelog_are_the_rows_of_the_store_that_wrote_them(
    tmp_path: Path, compaction: str
) -> None:
    writer = GeofencerState(tmp_path / "writer.sqlite3", PARTITIONS)
    reader = GeofencerState(tmp_path / "reader.sqlite3", PARTITIONS)
    writer.open()
    reader.open()
    try:
        log = _write_a_day(writer)
        assert any(write.row is None for write in log)  # the cuts dropped tail chunks: tombstones are in the log
        moved = tenant_partition("tenant-0", PARTITIONS)
        kept = next(p for p in range(PARTITIONS) if p != moved and writer.partition_writes(p))
        of_moved = [write for write in log if write.partition(PARTITIONS) == moved]
        # The reader held the moved partition long ago (the first third of its log), and holds another one now.
        reader.apply(of_moved[: len(of_moved) // 3] + [w for w in log if w.partition(PARTITIONS) == kept])
        before = _rows(reader, kept)
        replay = of_moved if compaction == "none" else _compacted(of_moved, compaction == "with-tombstones")
        reader.replace_partition(moved, replay, changelog_end=len(log))

        assert _rows(reader, moved) == _rows(writer, moved)
        assert _rows(reader, kept) == before
        assert reader.changelog_ends() == {moved: len(log)}
        tracks = reader.load_tracks(lambda tenant: RULES, lambda tenant: 200.0, partition=moved)
        expected = writer.load_tracks(lambda tenant: RULES, lambda tenant: 200.0, partition=moved)
        assert tracks.keys() == expected.keys() and tracks
        for key, track in tracks.items():
            assert track.facts() == expected[key].facts() and track.tail == expected[key].tail
        assert reader.load_presence(moved) == writer.load_presence(moved)
        assert reader.stored_offsets()[moved] == writer.stored_offsets()[moved]
    finally:
        writer.close()
        reader.close()


def test_a_late_fix_in_a_new_batch_gets_a_chunk_of_its_own(tmp_path: Path) -> None:
    """Two batches adding fixes of the same time to a technician's tail keep two rows: the chunk (the batch's next
    offset) is the key, not the time."""
    store = GeofencerState(tmp_path / "s.sqlite3")
    store.open()
    try:
        key = ("tenant-a", "tech-1")
        for offset, point in ((10, Point(100.0, 46.0, 14.0)), (20, Point(100.0, 46.001, 14.0))):
            changes = Changes()
            changes.tail.add(key, point)
            store.commit(changes, {0: offset})
        chunks = [w.key for w in store.partition_writes(0) if w.table == "stay_tail"]
    finally:
        store.close()
    assert sorted(chunks) == [(*key, 10), (*key, 20)]
