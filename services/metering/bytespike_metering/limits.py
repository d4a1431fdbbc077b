"""Throttling windows: RPM/TPM sliding windows and concurrency slots, behind one interface.

Two backends implement `Limiter`: `MemoryLimiter` (one metering replica; windows are lost
on restart, which only ever forgives) and `RedisLimiter` (several replicas; one Lua script
per call, so a check-and-take across all of a request's limits is atomic).

Windows are *sliding window counters*: a count per fixed window of W seconds, and the
estimate at time t is `previous * (1 - elapsed/W) + current`. That is exact for a steady
rate, never lets a burst at a window edge through twice (a fixed window would allow twice the
limit across the boundary), and needs two integers per limit rather than a log of every
request. A request is admitted only if *every* window has room for its amount, and then
the amount is added to every window; `retry_after_ms` is when the most constrained window
would have had room.

Concurrency slots are members of a set keyed by the request id with an expiry (the hold
TTL), so a slot whose release was lost frees itself instead of leaking forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Retry hint for a full concurrency limit: a slot frees when some request finishes.
CONCURRENCY_RETRY_MS = 1_000


@dataclass(frozen=True, slots=True)
class Window:
    """Take `amount` from the sliding-window limit `name` (e.g. `rpm:key:<id>`)."""

    name: str
    limit: int
    amount: int
    label: str = ""


@dataclass(frozen=True, slots=True)
class Slot:
    """Hold one of `limit` concurrent slots of `name` until released or expired."""

    name: str
    limit: int
    label: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    retry_after_ms: int = 0
    # Which limit refused (its label), for the denial message.
    refused_by: str = ""


ADMITTED = Decision(True)


class Limiter(Protocol):
    async def acquire(
        self,
        scope: str,
        windows: Sequence[Window],
        slots: Sequence[Slot],
        holder: str,
        ttl_ms: int,
    ) -> Decision:
        """All or nothing: takes every window amount and slot, or none and says why."""

    async def adjust(self, scope: str, deltas: Sequence[tuple[str, int]]) -> None:
        """Adds (or with a negative delta, gives back) to the current window of each name."""

    async def release(self, scope: str, slot_names: Sequence[str], holder: str) -> None:
        """Frees `holder`'s slot in each named concurrency limit (no-op if not held)."""

    async def aclose(self) -> None: ...


def sliding_estimate(previous: int, current: int, elapsed_ms: int, window_ms: int) -> float:
    return previous * (window_ms - elapsed_ms) / window_ms + current


def retry_after_ms(
    previous: int, current: int, elapsed_ms: int, window_ms: int, *, limit: int, amount: int
) -> int:
    """Milliseconds until `amount` fits under `limit`, if nothing else is taken meanwhile."""
    if amount > limit:
        # Never fits; a full window is the honest "not now" a client can act on.
        return window_ms
    if current + amount <= limit and previous > 0:
        # Fits once enough of the previous window has slid out (exact integer ceilings).
        at = _ceil_div(window_ms * (previous - (limit - current - amount)), previous)
        return max(1, at - elapsed_ms)
    # Needs the next window, where this window's count becomes the sliding part.
    at = _ceil_div(window_ms * (current - (limit - amount)), current) if current else 0
    return max(1, window_ms - elapsed_ms + at)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass
class _Counter:
    index: int = 0
    current: int = 0
    previous: int = 0

    def roll(self, index: int) -> None:
        if index == self.index:
            return
        self.previous = self.current if index == self.index + 1 else 0
        self.current = 0
        self.index = index


@dataclass
class MemoryLimiter:
    """Windows and slots in this process. Operations never await, so each is atomic."""

    window_ms: int
    clock: Callable[[], float] = time.time
    _counters: dict[str, _Counter] = field(default_factory=dict)
    _slots: dict[str, dict[str, float]] = field(default_factory=dict)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _counter(self, name: str, index: int) -> _Counter:
        counter = self._counters.setdefault(name, _Counter(index))
        counter.roll(index)
        return counter

    def _held(self, name: str, now_ms: int) -> dict[str, float]:
        members = self._slots.setdefault(name, {})
        for holder in [h for h, expiry in members.items() if expiry <= now_ms]:
            del members[holder]
        return members

    async def acquire(
        self,
        scope: str,
        windows: Sequence[Window],
        slots: Sequence[Slot],
        holder: str,
        ttl_ms: int,
    ) -> Decision:
        now = self._now_ms()
        index, elapsed = divmod(now, self.window_ms)
        for window in windows:
            c = self._counter(f"{scope}:{window.name}", index)
            if sliding_estimate(c.previous, c.current, elapsed, self.window_ms) + window.amount > (
                window.limit
            ):
                wait = retry_after_ms(
                    c.previous,
                    c.current,
                    elapsed,
                    self.window_ms,
                    limit=window.limit,
                    amount=window.amount,
                )
                return Decision(False, wait, window.label or window.name)
        for slot in slots:
            held = self._held(f"{scope}:{slot.name}", now)
            if holder not in held and len(held) >= slot.limit:
                return Decision(False, CONCURRENCY_RETRY_MS, slot.label or slot.name)
        for window in windows:
            self._counter(f"{scope}:{window.name}", index).current += window.amount
        for slot in slots:
            self._held(f"{scope}:{slot.name}", now)[holder] = now + ttl_ms
        return ADMITTED

    async def adjust(self, scope: str, deltas: Sequence[tuple[str, int]]) -> None:
        index = self._now_ms() // self.window_ms
        for name, delta in deltas:
            counter = self._counter(f"{scope}:{name}", index)
            counter.current = max(0, counter.current + delta)

    async def release(self, scope: str, slot_names: Sequence[str], holder: str) -> None:
        for name in slot_names:
            key = f"{scope}:{name}"
            members = self._slots.get(key)
            if members is not None:
                members.pop(holder, None)
                if not members:
                    del self._slots[key]

    async def aclose(self) -> None:
        return None
