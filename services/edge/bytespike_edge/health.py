"""Passive circuit breakers, one per deployment, fed by the outcome of every attempt.

closed    — traffic flows; outcomes land in a sliding time window. When the window holds at
            least `min_requests` outcomes and the failure ratio reaches `failure_ratio`, the
            breaker opens.
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


@dataclass(slots=True)
class Breaker:
    policy: BreakerPolicy
    clock: Callable[[], float]
    state: State = State.CLOSED
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    # Failures among `outcomes`, kept as they enter and leave: O(1) per record.
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
        self.outcomes.append((now, ok))
        self.failures += not ok
        horizon = now - self.policy.window_seconds
        while self.outcomes and self.outcomes[0][0] < horizon:
            _, good = self.outcomes.popleft()
            self.failures -= not good
        failures, total = self.failures, len(self.outcomes)
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
        self.outcomes.clear()
        self.failures = 0

    def _close(self) -> None:
        self.state = State.CLOSED
        self.cooldown = 0.0
        self.outcomes.clear()
        self.failures = 0


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
