"""The SSE parser's LF-only fast path agrees with its general path across mixed chunks."""

from __future__ import annotations

import pytest

from bytespike_edge.translate.sse import SSEEvent, SSEOverflow, SSEParser


def _events(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser(max_event_bytes=64)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


STREAM = b'event: a\ndata: {"x":1}\n\ndata: two\r\ndata: lines\r\n\r\n: c\n\ndata: end\n\n'
EXPECTED = [SSEEvent("a", '{"x":1}'), SSEEvent(None, "two\nlines"), SSEEvent(None, "end")]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, len(STREAM)])
def test_any_cut_of_a_mixed_stream_gives_the_same_events(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert _events(chunks) == EXPECTED


def test_a_partial_line_carried_between_lf_chunks_is_bounded() -> None:
    parser = SSEParser(max_event_bytes=16)
    assert parser.feed(b"data: 0123456") == []
    with pytest.raises(SSEOverflow):
        parser.feed(b"789abcdef")
