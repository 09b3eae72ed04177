"""Online and offline (``domain/presence.py``): silence is measured in watched time, which moves with what the
processor reads and, while it is caught up, with the wall clock, but never by more than a few seconds at once: time
nobody watched (a restart, a broker outage) makes nobody offline."""

from __future__ import annotations

import uuid

from domain.presence import CLOCK_STEP_CAP, PartitionClock, Presences

T = 1_800_000_000.0


def _id(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, name)


A, B = ("tenant-a", "tech-1"), ("tenant-a", "tech-2")


def test_watched_time_follows_small_steps_and_counts_a_long_jump_as_one_step() -> None:
    clock = PartitionClock()
    clock.advance(T)
    for second in range(1, 61):
        clock.advance(T + second)
    assert clock.watched == 60
    clock.advance(T + 30)  # a record received earlier than the last tick: the clock never goes back
    assert clock.watched == 60
    clock.advance(T + 60 + 3_600)  # an hour nobody watched (down, or cut off from the broker)
    assert clock.watched == 60 + CLOCK_STEP_CAP


def _watched(clock: PartitionClock) -> dict[int, float]:
    return {0: clock.watched}


def test_silence_of_the_threshold_is_offline_once_and_the_next_fix_is_online_again() -> None:
    clock, presences = PartitionClock(), Presences()
    clock.advance(T)
    presences.heard(A, 0, clock.watched, T - 2, _id("fix-a1"), 600.0)
    presences.heard(B, 0, clock.watched, T - 1, _id("fix-b1"), 600.0)
    for second in range(1, 600):
        clock.advance(T + second)
        if second % 10 == 0:  # B keeps posting
            presences.heard(B, 0, clock.watched, T + second, _id(f"fix-b{second}"), 600.0)
        assert presences.silent(_watched(clock), lambda tenant: 600.0) == []
    clock.advance(T + 600)
    assert presences.silent(_watched(clock), lambda tenant: 600.0) == [A]  # A only, and once
    clock.advance(T + 700)
    assert presences.silent(_watched(clock), lambda tenant: 600.0) == []
    was = presences.heard(A, 0, clock.watched, T + 700, _id("fix-a2"), 600.0)
    assert was is not None and was.last_seen == T - 2 and was.fix_id == _id("fix-a1")  # the offline period it ends
    assert presences.heard(A, 0, clock.watched, T + 701, _id("fix-a3"), 600.0) is None  # already online


def test_a_restart_or_an_outage_longer_than_the_threshold_makes_nobody_offline_at_once() -> None:
    clock, presences = PartitionClock(), Presences()
    clock.advance(T)
    presences.heard(A, 0, clock.watched, T, _id("fix-a1"), 60.0)
    for second in range(1, 51):  # 50 s of watched silence, a tick a second
        clock.advance(T + second)
    clock.advance(T + 3_600)  # then an hour down: it counts CLOCK_STEP_CAP
    assert presences.silent(_watched(clock), lambda tenant: 60.0) == []
    clock.advance(T + 3_600 + 5)  # watched again: 5 s more reach 60
    assert presences.silent(_watched(clock), lambda tenant: 60.0) == [A]


def test_a_late_fix_is_hearing_from_the_technician_but_not_its_newest_place() -> None:
    presences = Presences()
    presences.heard(A, 0, 0.0, T, _id("newest"), 600.0)
    presences.heard(A, 0, 10.0, T - 300, _id("late"), 600.0)
    presence = presences.by_key[A]
    assert (presence.heard_at, presence.last_seen, presence.fix_id) == (10.0, T, _id("newest"))


def test_each_partition_is_judged_by_its_own_clock_and_a_longer_threshold_defers_it() -> None:
    presences = Presences()
    presences.heard(A, 0, 0.0, T, _id("a"), 60.0)
    presences.heard(B, 1, 0.0, T, _id("b"), 60.0)
    assert presences.silent({0: 100.0, 1: 30.0}, lambda tenant: 60.0) == [A]  # partition 1 is behind
    assert presences.silent({0: 100.0, 1: 30.0}, lambda tenant: 60.0) == []
    assert presences.silent({0: 100.0, 1: 70.0}, lambda tenant: 120.0) == []  # the tenant's threshold went up
    assert presences.silent({0: 100.0, 1: 120.0}, lambda tenant: 120.0) == [B]


def test_its_own_offline_read_back_has_the_last_word_whatever_a_crash_lost() -> None:
    f, g = _id("f"), _id("g")
    # The offline was said, then a crash lost the state after it: read back, it makes the technician offline, and its
    # next fix says online.
    presences = Presences()
    presences.heard(A, 0, 0.0, T, f, 60.0)
    assert presences.said_offline(A, f) is None and not presences.by_key[A].online
    assert presences.heard(A, 0, 70.0, T + 70, g, 60.0) is not None
    # The crash also lost the offline in memory, and the next fix was read before the event: reading the event then
    # says that fix ended the silence, once.
    presences = Presences()
    presences.heard(A, 0, 0.0, T, f, 60.0)
    assert presences.heard(A, 0, 70.0, T + 70, g, 60.0) is None  # online all along, as far as it knew
    ended = presences.said_offline(A, f)
    assert ended is not None and ended.fix_id == g
    assert presences.said_offline(A, f) is None  # said once
    # No crash: the offline set in memory, then either order of the next fix and the event says online once.
    for fix_first in (True, False):
        presences = Presences()
        presences.heard(A, 0, 0.0, T, f, 60.0)
        assert presences.silent({0: 60.0}, lambda tenant: 60.0) == [A]
        if fix_first:
            assert presences.heard(A, 0, 70.0, T + 70, g, 60.0) is not None  # the online event
            assert presences.said_offline(A, f) is None
        else:
            assert presences.said_offline(A, f) is None
            assert presences.heard(A, 0, 70.0, T + 70, g, 60.0) is not None
