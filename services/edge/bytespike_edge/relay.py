"""Relaying an upstream SSE stream to the client, straight to ASGI.

Streams are relayed as they arrive, never buffered whole. Three choices keep the cost per
stream low (docs/performance.md, "Streams"):

- each upstream read becomes at most ONE client write: the read's complete frames go out
  together, and only an incomplete last frame waits for the next read;
- one keepalive timer per stream, rescheduled from the time of the last upstream read,
  instead of a task and a timeout per read;
- one listener task per stream for the client's disconnect, instead of Starlette's
  `StreamingResponse` (a task group and two tasks, one ASGI message per frame).

Each protocol supplies a `FrameHandler` that reads usage from the frames it passes and may
drop, rewrite or translate them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bytespike_common.errors import GatewayError, UpstreamHTTPError, UpstreamUnavailable
from bytespike_edge.call import CallContext

log = logging.getLogger(__name__)
# A frame larger than this is a broken or hostile upstream, not an LLM token.
MAX_FRAME_BYTES = 8 * 1024 * 1024


class Closable(Protocol):
    """What the relay needs of the upstream response, besides its chunks."""

    async def aclose(self) -> None: ...


class FrameHandler(Protocol):
    """Turns upstream SSE frames into client bytes (relayed as-is, filtered or translated)."""

    def frames(self, block: bytes) -> bytes:
        """Client bytes for complete upstream frames (each with its blank line, one or
        more back to back); b"" sends nothing."""
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


def split_frames(block: bytes) -> list[bytes]:
    """The complete SSE frames of `block`, in order (an unterminated rest is left out)."""
    frames: list[bytes] = []
    start = 0
    while True:
        end = block.find(b"\n\n", start)
        crlf = block.find(b"\r\n\r\n", start)
        if crlf != -1 and (end == -1 or crlf < end):
            frames.append(block[start : crlf + 4])
            start = crlf + 4
        elif end != -1:
            frames.append(block[start : end + 2])
            start = end + 2
        else:
            return frames


def frames_end(data: bytes | bytearray, start: int = 0) -> int:
    """Where the last complete frame of `data` ends (0 if none ends at or after `start`)."""
    lf = data.rfind(b"\n\n", start)
    crlf = data.rfind(b"\r\n\r\n", start)
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def frame_span(block: bytes, pos: int) -> tuple[int, int]:
    """Start and end of the frame of `block` (complete frames) that holds byte `pos`."""
    lf = block.rfind(b"\n\n", 0, pos)
    crlf = block.rfind(b"\r\n\r\n", 0, pos)
    start = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
    lf = block.find(b"\n\n", pos)
    crlf = block.find(b"\r\n\r\n", pos)
    ends = [end for end in (lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0) if end]
    return start, min(ends, default=len(block))


def frame_count(block: bytes) -> int:
    """How many frames `block` holds; one scan for LF streams (for usage estimates only)."""
    return block.count(b"\n\n") or block.count(b"\r\n\r\n")


class FrameSplitter:
    """Cuts upstream reads at frame boundaries: the complete frames of each read, in one
    piece (the read itself when it ends on a boundary, the common case: no copy)."""

    def __init__(self) -> None:
        self._rest = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        rest = self._rest
        if not rest:
            if chunk.endswith(b"\n\n"):
                return chunk
            end = frames_end(chunk)
            rest += chunk[end:]
            block = chunk[:end]
        else:
            # Only the new bytes (and the 3 before them) can hold a new boundary.
            searched = max(0, len(rest) - 3)
            rest += chunk
            end = frames_end(rest, searched)
            block = bytes(rest[:end])
            del rest[:end]
        if len(rest) > MAX_FRAME_BYTES:
            raise UpstreamHTTPError("The upstream sent an oversized stream frame.", status=502)
        return block

    def close(self) -> bytes:
        """The unterminated last frame, terminated; b"" if only whitespace is left."""
        rest, self._rest = bytes(self._rest), bytearray()
        return rest + b"\n\n" if rest.strip() else b""


class RelayResponse(Response):
    """The client's streamed answer: status line and headers, then the relayed frames.

    Whatever happens — the stream ends, breaks, or the client goes away — the upstream is
    closed and the call finished (`on_done`) exactly once. After the status line a failure
    travels as the protocol's in-stream error; a client disconnect cancels the upstream
    read at once.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        upstream: Closable,
        call: CallContext,
        *,
        handler: FrameHandler,
        on_done: Callable[[CallContext], None],
        keepalive_interval: float,
        headers: Mapping[str, str],
        media_type: str,
    ) -> None:
        # No `Response.__init__`: it would render a body and add a content-length.
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        if media_type.startswith("text/"):
            media_type += "; charset=utf-8"
        self.raw_headers = [
            *(
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ),
            (b"content-type", media_type.encode("latin-1")),
        ]
        self._chunks = chunks
        self._upstream = upstream
        self._call = call
        self._handler = handler
        self._on_done = on_done
        self._interval = keepalive_interval
        self._splitter = FrameSplitter()
        self._finished = False  # the last body message went out
        self._client_gone = False
        self._sending = False
        self._quiet_since = 0.0  # the last upstream read, or the last keepalive
        self._timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._send: Send | None = None
        self._task: asyncio.Task[Any] | None = None  # the one relaying

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        listener = asyncio.ensure_future(self._listen(receive))
        try:
            await self._relay(send)
        except asyncio.CancelledError:
            self._call.client_disconnected = True
            self._call.error_cause = self._call.error_cause or "client_disconnected"
            # Our own cancellation (the client left) ends the response normally; any
            # other (server shutdown) goes on.
            if not (self._client_gone and task.uncancel() == 0):
                raise
        except OSError:
            # Servers on ASGI >= 2.4 fail a send to a closed connection instead.
            self._call.client_disconnected = True
            self._call.error_cause = self._call.error_cause or "client_disconnected"
        finally:
            listener.cancel()
            self._stop_keepalives()
            self._on_done(self._call)
            if not self._finished:
                # Closing may await network I/O; never let it hold up (or be cancelled
                # with) a reply that went wrong.
                closing = asyncio.ensure_future(self._upstream.aclose())
                _closing.add(closing)
                closing.add_done_callback(_closed)
        if self._finished:
            # The reply is complete and the upstream read to its end: nothing left to wait
            # for, so no task for it.
            try:
                await self._upstream.aclose()
            except Exception as exc:
                log.debug("closing upstream response failed: %r", exc)
        if self.background is not None:
            await self.background()

    async def _listen(self, receive: Receive) -> None:
        """Cancels the relay when the client disconnects (servers on ASGI < 2.4 do not
        fail a send to a closed connection: they drop it)."""
        while (await receive())["type"] != "http.disconnect":
            pass
        # A completed response reads as a disconnect too.
        if not self._finished:
            self._gone()

    def _gone(self) -> None:
        assert self._task is not None
        self._client_gone = True
        self._task.cancel()

    async def _relay(self, send: Send) -> None:
        self._send = send
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        clock = asyncio.get_running_loop().time
        if self._interval > 0:
            self._quiet_since = clock()
            self._timer = asyncio.get_running_loop().call_at(
                self._quiet_since + self._interval, self._tick
            )
        chunks, handler, call = aiter(self._chunks), self._handler, self._call
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                out, last = self._finish(), True
            except Exception as exc:
                out, last = self._broken(exc), True
            else:
                if self._timer is not None:
                    self._quiet_since = clock()
                try:
                    block = self._splitter.feed(chunk)
                    out = handler.frames(block) if block else b""
                except Exception as exc:
                    out, last = self._broken(exc), True
                else:
                    last = False
                    if out:
                        call.mark_first_byte()
                        call.frames_relayed += frame_count(block)
            if last:
                await self._write(out, more=False)
                return
            if out:
                await self._write(out, more=True)

    def _finish(self) -> bytes:
        try:
            tail = self._splitter.close()
            return (self._handler.frames(tail) if tail else b"") + self._handler.end()
        except Exception as exc:
            return self._broken(exc)

    def _broken(self, exc: Exception) -> bytes:
        # The status line is gone: the failure travels as the protocol's in-stream error.
        log.warning("upstream stream for %s broke: %r", self._call.request_id, exc)
        self._call.error_cause = "upstream_stream_broken"
        return self._handler.error(UpstreamUnavailable("The upstream stream ended unexpectedly."))

    async def _write(self, body: bytes, *, more: bool) -> None:
        assert self._send is not None
        pending = self._keepalive
        if pending is not None:
            # A keepalive is on its way out: frames must not overtake it.
            self._keepalive = None
            await pending
        self._sending = True
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": more})
        finally:
            self._sending = False
        if not more:
            self._finished = True

    def _tick(self) -> None:
        """The one keepalive timer: due `interval` after the last upstream read (reads
        only move the time; the timer is not touched per read)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = self._quiet_since + self._interval
        if now >= due:
            # Skipped while a write is under way (the client is being written to) or the
            # last keepalive is still on its way.
            pending = self._keepalive
            if not self._sending and (pending is None or pending.done()):
                self._keepalive = loop.create_task(self._send_keepalive())
            self._quiet_since = now
            due = now + self._interval
        self._timer = loop.call_at(due, self._tick)

    async def _send_keepalive(self) -> None:
        assert self._send is not None
        self._sending = True
        try:
            body = self._handler.keepalive()
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            # ASGI >= 2.4 servers: the client is gone; end the relay as on a disconnect.
            self._gone()
        finally:
            self._sending = False

    def _stop_keepalives(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = self._keepalive
        if pending is not None:
            self._keepalive = None
            if not pending.done():
                pending.cancel()
            elif not pending.cancelled():
                pending.exception()  # seen: a failed send is the disconnect handled here


_closing: set[asyncio.Future[None]] = set()


def _closed(task: asyncio.Future[None]) -> None:
    _closing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("closing upstream response failed: %r", task.exception())
