"""A webhook endpoint's circuit breaker (``notifier.breaker``): opens after failures in a row, lets one trial through
after its cool-down, closes on a success and stays open longer after each failed trial."""

from __future__ import annotations

from notifier.breaker import FAILURES_TO_OPEN, FIRST_COOL_DOWN_SECONDS, MAX_COOL_DOWN_SECONDS, Breaker


def test_it_opens_after_failures_in_a_row_and_a_success_in_between_resets_them() -> None:
    breaker = Breaker()
    for _ in range(FAILURES_TO_OPEN - 1):
        breaker.failed(0.0)
    breaker.succeeded()
    for second in range(FAILURES_TO_OPEN - 1):
        breaker.failed(float(second))
        assert breaker.state(float(second)) == "closed" and breaker.allows(float(second))
    breaker.failed(10.0)
    assert breaker.state(10.0) == "open" and not breaker.allows(10.0)
    assert breaker.opens_again_at() == 10.0 + FIRST_COOL_DOWN_SECONDS


def test_after_its_cool_down_one_trial_goes_through_and_its_answer_decides() -> None:
    breaker = Breaker()
    for _ in range(FAILURES_TO_OPEN):
        breaker.failed(0.0)
    later = FIRST_COOL_DOWN_SECONDS
    assert breaker.state(later) == "half_open"
    assert breaker.allows(later) and not breaker.allows(later + 1)  # one trial at a time
    breaker.failed(later + 2)  # the trial failed: open again, twice as long
    assert breaker.state(later + 3) == "open" and breaker.opens_again_at() == later + 2 + 2 * FIRST_COOL_DOWN_SECONDS
    trial = later + 2 + 2 * FIRST_COOL_DOWN_SECONDS
    assert breaker.allows(trial)
    breaker.succeeded()
    assert breaker.state(trial) == "closed" and breaker.allows(trial) and breaker.allows(trial)
    assert breaker.opens_again_at() is None


def test_the_cool_down_grows_to_its_cap_while_the_endpoint_stays_down() -> None:
    breaker, now = Breaker(), 0.0
    for _ in range(FAILURES_TO_OPEN):
        breaker.failed(now)
    for _ in range(20):
        reopen = breaker.opens_again_at()
        assert reopen is not None
        now = reopen
        assert breaker.allows(now)
        breaker.failed(now)
    assert breaker.cool_down == MAX_COOL_DOWN_SECONDS


def test_a_trial_whose_answer_never_comes_does_not_hold_the_endpoint_forever() -> None:
    breaker = Breaker()
    for _ in range(FAILURES_TO_OPEN):
        breaker.failed(0.0)
    assert breaker.allows(FIRST_COOL_DOWN_SECONDS)
    assert not breaker.allows(FIRST_COOL_DOWN_SECONDS + 5)
    assert breaker.allows(2 * FIRST_COOL_DOWN_SECONDS + 1)  # another cool-down later: a new trial
