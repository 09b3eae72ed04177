"""The derived-facts rules applied record by record (``domain.derived_facts.Evaluation``): which records count, the
events each makes and where they go, and what a batch leaves for the processor to commit. The processor around it
is tested on a real broker (tests/geofencer/)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from domain.derived_facts import Evaluation, TenantLimits, offline_event
from domain.geofencing import EARTH_RADIUS_M, FenceBook, TechnicianFences
from domain.presence import PartitionClock, Presences
from domain.stays import StayTrack
from schemas.events import (
    DEFAULT_MAX_SPEED_KMH,
    FixQuality,
    LocationData,
    LocationRecorded,
    QualityFlag,
    TechnicianOffline,
    TrackingStopped,
    TrackingStoppedData,
    decode_event,
    encode_event,
)
from schemas.geofences import Circle, GeofenceDefined
from schemas.tenant_rules import StayRules

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
SITE = (6.5244, 3.3792)
_DEGREE_M = math.pi / 180 * EARTH_RADIUS_M
LIMITS: TenantLimits = (StayRules(), DEFAULT_MAX_SPEED_KMH, 600.0)


def fix(seconds: float, metres_north: float, technician: str = "tech-1", flags: tuple[QualityFlag, ...] = ()) -> bytes:
    return encode_event(
        LocationRecorded(
            event_id=uuid.uuid4(),
            tenant_id="t",
            technician_id=technician,
            recorded_at=T0 + timedelta(seconds=seconds),
            received_at=T0 + timedelta(seconds=seconds),
            data=LocationData(
                latitude=SITE[0] + metres_north / _DEGREE_M,
                longitude=SITE[1],
                accuracy_meters=5.0,
                quality=FixQuality(flags=flags),
            ),
        )
    )


class Fleet:
    """The processor's state, as it holds it between batches."""

    def __init__(self) -> None:
        self.technicians: dict[tuple[str, str], TechnicianFences] = {}
        self.tracks: dict[tuple[str, str], StayTrack] = {}
        self.clocks: dict[int, PartitionClock] = {}
        self.presences = Presences()
        self.book = FenceBook()
        self.book.apply(
            GeofenceDefined(
                tenant_id="t", geofence_id="site", at=T0, shape=Circle(latitude=SITE[0], longitude=SITE[1]), name="S"
            )
        )

    def batch(self, partition: int, values: list[bytes], *, max_fixes: int = 2_000, now: float = 0.0) -> Evaluation:
        evaluation = Evaluation(
            self.technicians,
            self.tracks,
            self.clocks,
            self.presences,
            self.book,
            lambda tenant: LIMITS,
            3_600.0,
            max_fixes,
            now,
        )
        evaluation.records(partition, values)
        return evaluation


def events(evaluation: Evaluation, partition: int) -> list[tuple[bytes | None, str]]:
    out = []
    for key, value in evaluation.outbox.by_partition.get(partition, []):
        assert value is not None
        out.append((key, decode_event(value).type))
    return out


def test_records_that_are_no_fix_are_passed_over_and_a_crossing_goes_to_the_fixs_partition() -> None:
    fleet = Fleet()
    garbage = [b"{", b'{"type": "nope"}', msgspec.json.encode({"type": "location_recorded"})]
    evaluation = fleet.batch(3, [*garbage, fix(0, 500), fix(10, 20)])
    assert evaluation.fixes == 2
    assert events(evaluation, 3) == [(b"t", "geofence_entered")]
    assert evaluation.outbox.counts == {"geofence_entered": 1}
    assert list(evaluation.outbox.by_partition) == [3]
    assert set(evaluation.changed) == {("t", "tech-1")} and evaluation.heard_from == set()
    assert [len(points) for points in evaluation.tail.points.values()] == [2]
    assert evaluation.tail.partition == {("t", "tech-1"): 3}
    assert fleet.technicians[("t", "tech-1")].inside == {"site"}


def test_a_flagged_fix_triggers_nothing_and_changes_nothing() -> None:
    fleet = Fleet()
    fleet.batch(0, [fix(0, 500)])
    evaluation = fleet.batch(0, [fix(10, 20, flags=("mock",))])
    assert evaluation.fixes == 1 and evaluation.outbox.by_partition == {}
    assert evaluation.changed == {} and evaluation.tail.points == {}
    assert fleet.technicians[("t", "tech-1")].inside == set()


def test_an_apps_stop_says_offline_at_once_and_the_next_fix_online() -> None:
    fleet = Fleet()
    fleet.batch(0, [fix(0, 500)])
    stopped = TrackingStopped(
        event_id=uuid.uuid4(),
        tenant_id="t",
        technician_id="tech-1",
        recorded_at=T0 + timedelta(seconds=30),
        received_at=T0 + timedelta(seconds=30),
        data=TrackingStoppedData(reason="terminated", app="overland"),
    )
    said = fleet.batch(0, [encode_event(stopped)], now=1_800_000_000.0)
    [(_, value)] = said.outbox.by_partition[0]
    assert value is not None
    offline = decode_event(value)
    assert isinstance(offline, TechnicianOffline)
    assert offline.data.reason == "tracking_stopped" and offline.received_at.timestamp() == 1_800_000_000.0
    assert said.heard_from == {("t", "tech-1")} and said.fixes == 0
    back = fleet.batch(0, [fix(60, 500)])
    assert events(back, 0) == [(b"t", "technician_online")]
    assert fleet.batch(0, [encode_event(stopped)]).outbox.by_partition == {}  # said again: offline already


def test_its_own_offline_read_back_is_the_last_word() -> None:
    fleet = Fleet()
    first = decode_event(fix(0, 500))
    assert isinstance(first, LocationRecorded)
    fleet.batch(0, [encode_event(first)])
    # The offline event it said for that silence, read back after a crash lost the state that said it.
    said = offline_event(("t", "tech-1"), fleet.presences.by_key[("t", "tech-1")], 600.0, 0.0)
    read_back = fleet.batch(0, [encode_event(said)])
    assert read_back.outbox.by_partition == {} and read_back.heard_from == {("t", "tech-1")}
    assert not fleet.presences.by_key[("t", "tech-1")].online  # still online with that fix: offline now
    assert events(fleet.batch(0, [fix(100, 500)]), 0) == [(b"t", "technician_online")]


def test_a_track_longer_than_its_limit_is_cut_and_the_cut_is_said() -> None:
    fleet = Fleet()
    values = [fix(10 * i, 5_000 + 30 * i) for i in range(400)]  # driving north, far from the site
    evaluation = fleet.batch(0, values, max_fixes=100)
    assert ("t", "tech-1") in evaluation.cut
    track = fleet.tracks[("t", "tech-1")]
    assert track.horizon is not None and len(track.tail) < 400
