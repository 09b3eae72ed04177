"""How good a fix is, pure: the checks every fix gets, and the one rule that says whether it may become a
technician's current position (docs/fix-quality.md).

Two kinds of check:

- **the fix alone** (``ingest_flags``): at (0, 0) (what a receiver without a fix reports), accuracy worse than the
  tenant's limit, a position its phone's system marked as mock or simulated. The ingest API computes them for every
  way a fix arrives and writes them into the event (``schemas.events.FixQuality``), beside the tenant's jump limit
  in force at that moment, so that every later reading of the log judges the fix the same way;
- **the fix beside the technician's last good one** (``against_last_good``): the same device time and place again
  (``duplicate``: a retransmission under another event id), or a jump: the speed implied by the distance and the
  device-time interval above the tenant's limit. The last good fix *is* the current position (a flagged fix never
  becomes one), so this needs no state beyond what the projection keeps already.

``verdict`` is both together; ``domain.projection.apply`` refuses a fix it flags, so the projector's table, every
edge's view, every replay and the geofence processor agree, whatever node reads the log and whenever.

Consequences, on purpose:

- spike and return (urban canyons): the spike is judged against the last good fix and refused; the fix after it is
  judged against the same last good fix, not the spike, and passes;
- a wrong last good fix heals itself: real fixes far from it are refused only until the time since it makes their
  distance plausible (2 km at 200 km/h: 36 s); after a gap longer than ``JUMP_WINDOW`` nothing is judged a jump
  (a technician who flew, or whose phone was off, is taken where it is);
- a fix not newer than the last good one is late: it never moves the position, so it is not judged a jump either.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, Literal, NamedTuple, Protocol

from domain.fence_shapes import METRES_PER_DEGREE
from domain.geodesy import distance_m
from schemas.events import QUALITY_FLAGS, QualityFlag

# Two fixes closer in device time than this are judged as if this far apart: GPS jitter of a few metres between
# fixes a tenth of a second apart is not a flight.
MIN_INTERVAL: Final = timedelta(seconds=1)
# Past this gap since the last good fix, a fix is taken wherever it is (see the module's docstring).
JUMP_WINDOW: Final = timedelta(minutes=15)
_JUMP_WINDOW_S: Final = JUMP_WINDOW.total_seconds()
_MIN_INTERVAL_S: Final = MIN_INTERVAL.total_seconds()


class Anchor(Protocol):
    """What the checks need of the technician's last good fix (``domain.projection.Fix`` is one; ``Spot`` too)."""

    @property
    def latitude(self) -> float: ...
    @property
    def longitude(self) -> float: ...
    @property
    def recorded_at(self) -> datetime: ...


class Spot(NamedTuple):
    """An anchor made of a fix's place and device time."""

    latitude: float
    longitude: float
    recorded_at: datetime


def ingest_flags(
    latitude: float, longitude: float, accuracy_meters: float | None, mock: bool, max_accuracy_meters: float
) -> tuple[QualityFlag, ...]:
    """The checks of the fix alone, in ``QUALITY_FLAGS`` order (empty: none failed)."""
    flags: list[QualityFlag] = []
    if latitude == 0 and longitude == 0:
        flags.append("zero")
    if accuracy_meters is not None and accuracy_meters > max_accuracy_meters:
        flags.append("accuracy")
    if mock:
        flags.append("mock")
    return tuple(flags)


def implied_speed_kmh(last: Anchor, latitude: float, longitude: float, recorded_at: datetime) -> float:
    """The speed it would take to get from ``last`` to the fix in the device time between them (at least
    ``MIN_INTERVAL``)."""
    seconds = max((recorded_at - last.recorded_at).total_seconds(), MIN_INTERVAL.total_seconds())
    return distance_m(last.latitude, last.longitude, latitude, longitude) / seconds * 3.6


def against_last_good(
    last: Anchor | None, latitude: float, longitude: float, recorded_at: datetime, max_speed_kmh: float
) -> tuple[QualityFlag, ...]:
    """``duplicate`` or ``jump`` beside the last good fix, or nothing (no last good fix: nothing to judge by)."""
    if last is None:
        return ()
    if recorded_at == last.recorded_at and latitude == last.latitude and longitude == last.longitude:
        return ("duplicate",)
    seconds = (recorded_at - last.recorded_at).total_seconds()
    if is_jump(last.latitude, last.longitude, latitude, longitude, seconds, max_speed_kmh):
        return ("jump",)
    return ()


def is_jump(
    last_latitude: float, last_longitude: float, latitude: float, longitude: float, seconds: float, max_speed_kmh: float
) -> bool:
    """Whether going from the last good place to this one in ``seconds`` of device time takes more than
    ``max_speed_kmh`` (never for a fix not newer, or newer by more than ``JUMP_WINDOW``). Shared with the stops rule,
    which judges fixes in device-time order (``domain.stays``)."""
    if seconds <= 0 or seconds > _JUMP_WINDOW_S:
        return False  # late (it moves nothing), or after a gap: taken where it is
    allowed_m = max_speed_kmh / 3.6 * max(seconds, _MIN_INTERVAL_S)
    # The great circle is no longer than going along the meridian, then along the parallel where it is longest (the
    # equator's): a fix within that bound is no jump, with no trigonometry. Most fixes end here.
    across = abs(longitude - last_longitude)
    if across <= 180 and (abs(latitude - last_latitude) + across) * METRES_PER_DEGREE <= allowed_m:
        return False
    metres = distance_m(last_latitude, last_longitude, latitude, longitude)
    return metres / max(seconds, _MIN_INTERVAL_S) * 3.6 > max_speed_kmh


def verdict(
    stamped: tuple[QualityFlag, ...],
    last: Anchor | None,
    latitude: float,
    longitude: float,
    recorded_at: datetime,
    max_speed_kmh: float,
) -> tuple[QualityFlag, ...]:
    """Every flag of the fix: the ones the ingest API stamped, then the ones beside the last good fix, in
    ``QUALITY_FLAGS`` order. Empty: a good fix."""
    beside = against_last_good(last, latitude, longitude, recorded_at, max_speed_kmh)
    if not beside:
        return stamped
    return tuple(flag for flag in QUALITY_FLAGS if flag in stamped or flag in beside)


QualityFilter = Literal["good", "flagged", "all"]  # which fixes a history or an export lists (default: good)
QUALITY_FILTERS: tuple[QualityFilter, ...] = ("good", "flagged", "all")


def wanted(quality: QualityFilter, flags: Sequence[str]) -> bool:
    """Whether a fix with ``flags`` is listed under the filter ``quality`` (the history's and the exports')."""
    return quality == "all" or (quality == "flagged") == bool(flags)
