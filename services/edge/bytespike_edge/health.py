"""Passive circuit breakers, one per deployment, fed by the outcome of every attempt.

closed    — traffic flows; outcomes land in a sliding time window, counted in tenths of
            it (`WINDOW_BUCKETS`). When the window holds at least `min_requests`
            outcomes and the failure ratio reaches `failure_ratio`, the breaker opens.
open      — the deployment is skipped for a cooldown that doubles each time it re-opens
            (capped), so a deployment that keeps failing is probed ever less often.
half-open — after the cooldown one probe request at a time is let through; a success
            closes the breaker (and resets the cooldown), a failure re-opens it.

If every deployment of a model is open the plan keeps them all (better a likely failure
than a certain refusal) — Envoy calls this panic mode.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

T = TypeVar("T")


class State(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    window_seconds: float = 30.0
    min_requests: int = 5
    failure_ratio: float = 0.5
    base_cooldown: float = 5.0
    max_cooldown: float = 300.0


# The window is kept as this many buckets of counts, each a tenth of it wide: outcomes
# leave it a bucket at a time (between 0.9 and 1 window after they came), and a record is
# two additions, where keeping each outcome made a tuple per request and held a window's
# worth of them (150,000 at 5,000 requests/s over 30 s, ~13 MB).
WINDOW_BUCKETS = 10


@dataclass(slots=True)
class Breaker:
    policy: BreakerPolicy
    clock: Callable[[], float]
    state: State = State.CLOSED
    # [bucket number, outcomes, failures] per bucket with any, oldest first; a bucket
    # number is the time divided by the bucket width.
    buckets: deque[list[int]] = field(default_factory=deque)
    # Outcomes and failures over `buckets`, kept as buckets enter and leave.
    total: int = 0
    failures: int = 0
    cooldown: float = 0.0
    open_until: float = 0.0
    probing: bool = False
    # Earliest time the vendor asked us to come back (retry-after), independent of state.
    not_before: float = 0.0

    def available(self) -> bool:
        now = self.clock()
        if now < self.not_before:
            return False
        if self.state == State.OPEN and now >= self.open_until:
            self.state = State.HALF_OPEN
            self.probing = False
        if self.state == State.HALF_OPEN:
            return not self.probing
        return self.state == State.CLOSED

    def begin(self) -> None:
        if self.state == State.HALF_OPEN:
            self.probing = True

    def record(self, ok: bool, retry_after: float | None = None) -> None:
        now = self.clock()
        if retry_after:
            self.not_before = max(self.not_before, now + retry_after)
        if self.state == State.HALF_OPEN:
            self.probing = False
            if ok:
                self._close()
            else:
                self._open(now)
            return
        number = int(now * WINDOW_BUCKETS // self.policy.window_seconds)
        buckets = self.buckets
        if not buckets or buckets[-1][0] != number:
            # A new bucket: those a whole window older leave.
            while buckets and buckets[0][0] <= number - WINDOW_BUCKETS:
                _, outcomes, failures = buckets.popleft()
                self.total -= outcomes
                self.failures -= failures
            buckets.append([number, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        self.total += 1
        if not ok:
            bucket[2] += 1
            self.failures += 1
        failures, total = self.failures, self.total
        if (
            self.state == State.CLOSED
            and total >= self.policy.min_requests
            and failures / total >= self.policy.failure_ratio
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self.cooldown = min(
            self.policy.max_cooldown,
            self.cooldown * 2 if self.cooldown else self.policy.base_cooldown,
        )
        self.state = State.OPEN
        self.open_until = now + self.cooldown
        self._forget()

    def _close(self) -> None:
        self.state = State.CLOSED
        self.cooldown = 0.0
        self._forget()

    def _forget(self) -> None:
        self.buckets.clear()
        self.total = self.failures = 0


class HealthBoard:
    """Breakers by deployment id, created on first use."""

    def __init__(
        self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._policy = policy or BreakerPolicy()
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}

    def breaker(self, deployment_id: str) -> Breaker:
        found = self._breakers.get(deployment_id)
        if found is None:
            found = self._breakers[deployment_id] = Breaker(self._policy, self._clock)
        return found

    def healthy_first(self, items: Sequence[T], key: Callable[[T], str]) -> list[T]:
        """Available deployments in plan order; all of them if none is available (panic)."""
        available = [item for item in items if self.breaker(key(item)).available()]
        return available or list(items)

    def states(self) -> dict[str, State]:
        return {deployment: breaker.state for deployment, breaker in self._breakers.items()}
