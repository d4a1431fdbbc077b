"""Relaying an upstream answer to the client: errors, whole bodies and SSE streams.

Streams are relayed frame by frame as they arrive (no buffering of a whole response); each
protocol supplies a `FrameFilter` that reads usage from the frames it passes and may drop
or rewrite one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from bytespike_common.errors import GatewayError, UpstreamHTTPError, UpstreamUnavailable
from bytespike_edge.call import CallContext
from bytespike_edge.upstream.client import UpstreamResponse

log = logging.getLogger(__name__)
# A frame larger than this is a broken or hostile upstream, not an LLM token.
MAX_FRAME_BYTES = 8 * 1024 * 1024


class FrameHandler(Protocol):
    """Turns upstream SSE frames into client bytes (relayed as-is, filtered or translated)."""

    def frame(self, frame: bytes) -> bytes:
        """Client bytes for one upstream frame (with its blank line); b"" sends nothing."""
        ...

    def end(self) -> bytes:
        """Client bytes once the upstream body ended."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """The client protocol's in-stream error frame (the status line is already sent)."""
        ...

    def keepalive(self) -> bytes:
        """A frame the client's SDK ignores, sent during long upstream silences."""
        ...


def frame_fields(frame: bytes) -> tuple[str | None, str | None]:
    """The `event:` name and the joined `data:` of one SSE frame (None if it has no data)."""
    event: str | None = None
    data: list[str] = []
    for line in frame.splitlines():
        if line.startswith(b"data:"):
            data.append(line[6:].decode() if line[5:6] == b" " else line[5:].decode())
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
    return event, "\n".join(data) if data else None


def split_frames(buffer: bytearray) -> list[bytes]:
    """Removes and returns the complete SSE frames at the start of `buffer`."""
    frames: list[bytes] = []
    start = 0
    while True:
        end = buffer.find(b"\n\n", start)
        crlf = buffer.find(b"\r\n\r\n", start)
        if crlf != -1 and (end == -1 or crlf < end):
            frames.append(bytes(buffer[start : crlf + 4]))
            start = crlf + 4
        elif end != -1:
            frames.append(bytes(buffer[start : end + 2]))
            start = end + 2
        else:
            break
    del buffer[:start]
    if len(buffer) > MAX_FRAME_BYTES:
        raise UpstreamHTTPError("The upstream sent an oversized stream frame.", status=502)
    return frames


async def _ticking(chunks: AsyncIterator[bytes], interval: float) -> AsyncIterator[bytes | None]:
    """The chunks, with None each time `interval` seconds pass without one."""
    iterator = aiter(chunks)
    pending: asyncio.Future[bytes] = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            done, _ = await asyncio.wait((pending,), timeout=interval)
            if not done:
                yield None
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            yield chunk
            pending = asyncio.ensure_future(anext(iterator))
    finally:
        pending.cancel()


async def relay_stream(
    chunks: AsyncIterator[bytes],
    response: UpstreamResponse,
    call: CallContext,
    *,
    handler: FrameHandler,
    on_done: Callable[[CallContext], None],
    keepalive_interval: float = 0.0,
) -> AsyncIterator[bytes]:
    """Yields client bytes as upstream frames arrive; always closes the upstream and
    finishes the call, whether the stream ends, breaks, or the client goes away."""
    buffer = bytearray()
    source = _ticking(chunks, keepalive_interval) if keepalive_interval > 0 else chunks
    try:
        async for chunk in source:
            if chunk is None:
                yield handler.keepalive()
                continue
            buffer += chunk
            for frame in split_frames(buffer):
                out = handler.frame(frame)
                if out:
                    call.mark_first_byte()
                    call.frames_relayed += 1
                    yield out
        tail = handler.frame(bytes(buffer) + b"\n\n") if buffer.strip() else b""
        yield tail + handler.end()
    except (asyncio.CancelledError, GeneratorExit):
        call.client_disconnected = True
        call.error_cause = call.error_cause or "client_disconnected"
        raise
    except Exception as exc:
        # The status line is gone: the failure travels as the protocol's in-stream error.
        log.warning("upstream stream for %s broke: %r", call.request_id, exc)
        call.error_cause = "upstream_stream_broken"
        yield handler.error(UpstreamUnavailable("The upstream stream ended unexpectedly."))
    finally:
        on_done(call)
        # Closing may await network I/O; never let it hold up (or be cancelled with) the reply.
        task = asyncio.ensure_future(response.aclose())
        _closing.add(task)
        task.add_done_callback(_closed)


_closing: set[asyncio.Future[None]] = set()


def _closed(task: asyncio.Future[None]) -> None:
    _closing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("closing upstream response failed: %r", task.exception())
