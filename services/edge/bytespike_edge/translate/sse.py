"""Server-sent events: an incremental parser for upstream bodies and frame builders.

The parser follows the WHATWG event-stream rules the three SDKs implement: lines end in
\\n, \\r\\n or \\r; `data:` lines accumulate (joined by \\n); a blank line dispatches; lines
starting with ":" are comments; one space after the colon is stripped. Memory is bounded:
a line or an event larger than `max_event_bytes` raises `SSEOverflow`.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from bytespike_edge.translate.ir import JSON


class SSEOverflow(ValueError):
    """An upstream event exceeded the parser's size bound."""


@dataclass(slots=True, frozen=True)
class SSEEvent:
    event: str | None
    data: str


class SSEParser:
    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._max = max_event_bytes
        self._buffer = bytearray()
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0
        self._has_data = False
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across chunks
        self._pending_cr = False
        if b"\r" not in chunk:
            return self._feed_lf(chunk)
        self._buffer += chunk
        events: list[SSEEvent] = []
        start = 0
        buffer = self._buffer
        while True:
            end = _line_end(buffer, start)
            if end < 0:
                break
            line = bytes(buffer[start:end])
            start = end + 1
            if buffer[end] == 0x0D:  # \r: swallow a following \n
                if start < len(buffer):
                    if buffer[start] == 0x0A:
                        start += 1
                else:
                    self._pending_cr = True
            event = self._line(line)
            if event is not None:
                events.append(event)
        del buffer[:start]
        if len(buffer) > self._max:
            raise SSEOverflow(f"SSE line exceeds {self._max} bytes")
        return events

    def _feed_lf(self, chunk: bytes) -> list[SSEEvent]:
        """`feed` for bytes without \r, nearly all of them: every line split at once (the
        buffer never holds a \r either: it is a line end)."""
        if self._buffer:
            self._buffer += chunk
            chunk = bytes(self._buffer)
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if len(rest) > self._max:
            raise SSEOverflow(f"SSE line exceeds {self._max} bytes")
        self._buffer = bytearray(rest)
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """End of body: a final event without its blank line still counts."""
        events: list[SSEEvent] = []
        if self._buffer:
            event = self._line(bytes(self._buffer))
            self._buffer.clear()
            if event is not None:
                events.append(event)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            return self._dispatch()
        if raw.startswith(b":"):
            return None
        name, colon, value = raw.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", errors="replace")
        if name == b"data":
            self._size += len(value)
            if self._size > self._max:
                raise SSEOverflow(f"SSE event exceeds {self._max} bytes")
            self._data.append(text)
            self._has_data = True
        elif name == b"event":
            self._event = text
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = SSEEvent(self._event, "\n".join(self._data)) if self._has_data else None
        self._event = None
        self._data = []
        self._size = 0
        self._has_data = False
        return event


def _line_end(buffer: bytearray, start: int) -> int:
    lf = buffer.find(b"\n", start)
    cr = buffer.find(b"\r", start, lf if lf >= 0 else len(buffer))
    return cr if cr >= 0 else lf


def frame(payload: JSON | bytes, event: str | None = None) -> bytes:
    """One SSE frame: optional `event:` line, one `data:` line, blank line."""
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


COMMENT_KEEPALIVE = b": keepalive\n\n"
# google-genai 3.x reads every non-`data: ` line as (part of) a JSON chunk, so a comment
# line breaks its stream; a bare blank line is skipped by it and by every SSE parser.
BLANK_KEEPALIVE = b"\n"
