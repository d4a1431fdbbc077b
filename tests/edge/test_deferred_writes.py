"""`DeferredTransport`: the writes of one turn of the loop go out at its end, in order."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import weakref
from typing import Any

import pytest

from bytespike_edge.deferred_writes import DeferredTransport

pytestmark = pytest.mark.timeout(20)


class Recording(asyncio.Transport):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.events: list[Any] = []
        self.closing = False
        self.fail = fail

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.fail:
            raise RuntimeError("a broken transport")
        self.events.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.events.append([bytes(data) for data in list_of_data])

    def write_eof(self) -> None:
        self.events.append("eof")

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def abort(self) -> None:
        self.events.append("abort")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7


async def test_a_turns_writes_go_out_at_its_end_in_order() -> None:
    one, two = Recording(), Recording()
    first, second = DeferredTransport(one), DeferredTransport(two)
    first.write(b"a")
    second.write(b"x")
    first.writelines([b"b", b"c"])
    first.write(b"")  # nothing to send: not queued
    assert one.events == two.events == []
    assert first.get_write_buffer_size() == 3 + 7
    await asyncio.sleep(0)
    assert one.events == [[b"a", b"b", b"c"]]
    assert two.events == [b"x"]
    # The next turn's writes: a turn of their own.
    second.write(b"y")
    await asyncio.sleep(0)
    assert two.events == [b"x", b"y"]


async def test_close_and_eof_send_what_is_queued_first_and_abort_drops_it() -> None:
    closed, ended, aborted = Recording(), Recording(), Recording()
    deferred = [DeferredTransport(t) for t in (closed, ended, aborted)]
    for transport in deferred:
        transport.write(b"queued")
    deferred[0].close()
    deferred[1].write_eof()
    deferred[2].abort()
    assert closed.events == [b"queued", "close"]
    assert ended.events == [b"queued", "eof"]
    assert aborted.events == ["abort"]
    await asyncio.sleep(0)  # nothing is sent twice
    assert (closed.events, ended.events, aborted.events) == (
        [b"queued", "close"],
        [b"queued", "eof"],
        ["abort"],
    )


async def test_what_was_queued_for_a_closed_transport_is_dropped() -> None:
    gone = Recording()
    DeferredTransport(gone).write(b"for nobody")
    gone.close()  # the connection was lost before the end of the turn
    await asyncio.sleep(0)
    assert gone.events == ["close"]


async def test_a_buffer_is_taken_as_it_is_when_written() -> None:
    recording = Recording()
    deferred = DeferredTransport(recording)
    buffer = bytearray(b"first")
    deferred.write(buffer)
    buffer[:] = b"reuse"  # the caller reuses its buffer before the end of the turn
    deferred.write(memoryview(b"-second"))
    with pytest.raises(TypeError):
        deferred.write("text")  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert recording.events == [[b"first", b"-second"]]


async def test_one_broken_transport_does_not_hold_the_others_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, fine = Recording(fail=True), Recording()
    DeferredTransport(broken).write(b"lost")
    DeferredTransport(fine).write(b"sent")
    with caplog.at_level(logging.ERROR):
        await asyncio.sleep(0)
    assert fine.events == [b"sent"]
    assert "deferred write failed" in caplog.text


def test_a_finished_loop_is_not_kept_alive() -> None:
    async def write_once() -> None:
        DeferredTransport(Recording()).write(b"x")
        await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(write_once())
    loop.close()
    alive = weakref.ref(loop)
    del loop
    gc.collect()
    assert alive() is None


async def test_bytes_reach_the_peer_of_a_real_socket() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    with ours, theirs:
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        deferred = DeferredTransport(transport)  # type: ignore[arg-type]
        assert deferred.get_extra_info("socket") is not None
        deferred.write(b"GET / HTTP/1.1\r\n")
        deferred.write(b"\r\n")
        await asyncio.sleep(0.05)
        assert await loop.sock_recv(theirs, 100) == b"GET / HTTP/1.1\r\n\r\n"
        deferred.write(b"bye")
        deferred.close()
        await asyncio.sleep(0.05)
        assert await loop.sock_recv(theirs, 100) == b"bye"
