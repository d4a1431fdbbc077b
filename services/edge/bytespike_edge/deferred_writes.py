"""Socket writes held to the end of the event loop's turn, then sent one after another.

Under load the edge's loop serves many requests per turn (at 64 in flight, a turn runs
tens of request steps). Written the moment each request reaches them, its upstream
request wakes the vendor and its answer wakes the client once per request: a peer woken
for one request, then again for the next a few dozen µs later, each wake-up a context
switch that also preempts whatever ran on that core (often the edge). Held to the end of
the turn, every request of the turn goes out in one burst, and each peer finds them
together. The bytes and their order are the same; a write is at most one turn late.
Measured side by side (`python -m bench.ab`, three runs of 8 rounds, 16 and 32 in flight
per suite): the edge 13 to 20 µs less CPU a request, the fake vendor 6 to 11 less, the load
generator 1 to 3 (docs/performance.md).

`DeferredTransport` wraps a transport: `write` and `writelines` queue the data; the
first queued write of a turn schedules one `call_soon` that sends every wrapped
transport's queue, in the order they first queued. Every write to a transport goes
through its queue, so its bytes keep their order; `close` and `write_eof` send what is
queued first, `abort` drops it, and the queue counts in `get_write_buffer_size`. A queue
whose transport closed meanwhile (the peer went away) is dropped, as the transport would.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


class _Flusher:
    """One per event loop: the transports with queued data, sent at the end of the turn."""

    __slots__ = ("_loop", "_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the flusher is the loop's value in `_flushers`, whose keys are weak.
        self._loop = weakref.ref(loop)
        self._waiting: list[DeferredTransport] = []

    def queue(self, transport: DeferredTransport) -> None:
        if not self._waiting:
            loop = self._loop()
            assert loop is not None, "a transport outlived its event loop"
            loop.call_soon(self.flush)
        self._waiting.append(transport)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for transport in waiting:
            try:
                transport.send_queued()
            except Exception:
                # One broken transport must not keep the others' bytes back.
                log.exception("deferred write failed")


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = (
    weakref.WeakKeyDictionary()
)


def _flusher() -> _Flusher:
    loop = asyncio.get_running_loop()
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


class DeferredTransport(asyncio.Transport):
    """A transport whose writes go out at the end of the loop's turn (module docstring)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._queued: list[bytes] = []
        self._queued_size = 0
        self._flusher = _flusher()

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(f"data: expecting a bytes-like instance, got {type(data).__name__}")
            # The caller may reuse its buffer once `write` returns: keep what it holds now.
            data = bytes(data)
        if not data:
            return
        if not self._queued:
            self._flusher.queue(self)
        self._queued.append(data)
        self._queued_size += len(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def send_queued(self) -> None:
        """Hands what is queued to the wrapped transport (the flusher, `close`, `write_eof`)."""
        queued, self._queued, self._queued_size = self._queued, [], 0
        if not queued or self._transport.is_closing():
            return
        if len(queued) == 1:
            self._transport.write(queued[0])
        else:
            self._transport.writelines(queued)

    def get_write_buffer_size(self) -> int:
        return self._queued_size + self._transport.get_write_buffer_size()

    def write_eof(self) -> None:
        self.send_queued()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self.send_queued()
        self._transport.close()

    def abort(self) -> None:
        self._queued, self._queued_size = [], 0
        self._transport.abort()

    # -- the rest is the wrapped transport's ---------------------------------------------------

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()
