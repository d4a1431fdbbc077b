from __future__ import annotations

import pytest
from pydantic import ValidationError

from bytespike_edge.health import BreakerPolicy, HealthBoard, State
from bytespike_edge.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_on_failure_ratio_and_cooldown_grows() -> None:
    clock = Clock()
    board = HealthBoard(BreakerPolicy(min_requests=4, failure_ratio=0.5, base_cooldown=5), clock)
    breaker = board.breaker("d")
    for ok in (True, False, True, False):
        breaker.record(ok)
    assert breaker.state == State.OPEN and not breaker.available()
    clock.now += 5
    assert breaker.available() and breaker.state == State.HALF_OPEN
    breaker.begin()
    assert not breaker.available()  # one probe at a time
    breaker.record(False)
    assert breaker.state == State.OPEN and breaker.cooldown == 10
    clock.now += 10
    assert breaker.available()
    breaker.begin()
    breaker.record(True)
    assert breaker.state == State.CLOSED and breaker.cooldown == 0


def test_old_outcomes_leave_the_window() -> None:
    clock = Clock()
    breaker = HealthBoard(BreakerPolicy(window_seconds=10, min_requests=3), clock).breaker("d")
    breaker.record(False)
    breaker.record(False)
    clock.now += 11
    breaker.record(False)
    assert breaker.state == State.CLOSED


def test_retry_after_and_panic_mode() -> None:
    clock = Clock()
    board = HealthBoard(clock=clock)
    board.breaker("a").record(False, retry_after=3)
    assert board.healthy_first(["a", "b"], str) == ["b"]
    assert board.healthy_first(["a"], str) == ["a"]  # nothing available: try anyway
    clock.now += 3
    assert board.healthy_first(["a", "b"], str) == ["a", "b"]


def test_the_window_moves_a_tenth_at_a_time() -> None:
    """Outcomes are counted in buckets a tenth of the window wide: they leave a bucket at a
    time, and a breaker keeps at most a window's buckets however many requests it sees."""
    policy = BreakerPolicy(window_seconds=10, min_requests=3, failure_ratio=0.5)
    clock = Clock()
    inside = HealthBoard(policy, clock).breaker("d")
    inside.record(False)
    clock.now += 0.95  # same bucket
    inside.record(False)
    clock.now = 1009.99  # the first bucket is still in the window
    inside.record(False)
    assert inside.state == State.OPEN

    clock.now = 1000.0
    leaving = HealthBoard(policy, clock).breaker("d")
    leaving.record(False)
    leaving.record(False)
    clock.now = 1010.0  # a whole window later: the first bucket leaves
    leaving.record(False)
    assert leaving.state == State.CLOSED and (leaving.total, leaving.failures) == (1, 1)

    busy = HealthBoard(policy, clock).breaker("d")
    for step in range(100_000):
        clock.now = 2000 + step * 0.001
        busy.record(step % 3 != 2)  # a third failing: under the ratio
    assert busy.state == State.CLOSED
    assert len(busy.buckets) <= 10
    assert busy.total == sum(bucket[1] for bucket in busy.buckets)
    assert busy.failures == sum(bucket[2] for bucket in busy.buckets)


def test_a_window_of_no_length_is_refused_at_start_up() -> None:
    # The window is divided into buckets: a zero or negative one cannot be.
    for window in (0, -1):
        with pytest.raises(ValidationError, match="breaker_window"):
            Settings(key_hash_secret="test-secret-0123456789", breaker_window=window)
