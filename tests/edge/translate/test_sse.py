"""The incremental SSE parser and frame builders."""

from __future__ import annotations

import pytest

from bytespike_edge.translate.sse import COMMENT_KEEPALIVE, SSEEvent, SSEOverflow, SSEParser, frame


def feed_all(parser: SSEParser, chunks: list[bytes]) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events + parser.close()


def test_event_name_and_data() -> None:
    raw = b'event: message_start\ndata: {"a":1}\n\nevent: ping\ndata: {"type":"ping"}\n\n'
    assert feed_all(SSEParser(), [raw]) == [
        SSEEvent("message_start", '{"a":1}'),
        SSEEvent("ping", '{"type":"ping"}'),
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_endings(newline: bytes) -> None:
    raw = b"event: e" + newline + b"data: x" + newline + newline + b"data: y" + newline + newline
    assert feed_all(SSEParser(), [raw]) == [SSEEvent("e", "x"), SSEEvent(None, "y")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    raw = b"data: first\ndata: second\ndata:third\n\n"
    assert feed_all(SSEParser(), [raw]) == [SSEEvent(None, "first\nsecond\nthird")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    raw = b": keepalive\n\nid: 7\nretry: 10\ndata: x\n\n"
    assert feed_all(SSEParser(), [raw]) == [SSEEvent(None, "x")]


def test_partial_lines_across_chunks_byte_by_byte() -> None:
    raw = b'event: content_block_delta\r\ndata: {"text":"h\xc3\xa9"}\r\n\r\ndata: [DONE]\r\n\r\n'
    chunks = [raw[i : i + 1] for i in range(len(raw))]
    assert feed_all(SSEParser(), chunks) == [
        SSEEvent("content_block_delta", '{"text":"hé"}'),
        SSEEvent(None, "[DONE]"),
    ]


def test_crlf_split_between_chunks_does_not_make_an_empty_line() -> None:
    events = feed_all(SSEParser(), [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert events == [SSEEvent(None, "a\nb")]


def test_final_event_without_blank_line_is_dispatched_on_close() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"last":true}') == []
    assert parser.close() == [SSEEvent(None, '{"last":true}')]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert feed_all(SSEParser(), [b"\n\n\nevent: x\n\n"]) == []


def test_oversized_line_is_refused() -> None:
    parser = SSEParser(max_event_bytes=16)
    with pytest.raises(SSEOverflow):
        parser.feed(b"data: " + b"x" * 32)


def test_oversized_event_across_lines_is_refused() -> None:
    parser = SSEParser(max_event_bytes=16)
    with pytest.raises(SSEOverflow):
        parser.feed(b"data: 0123456789\ndata: 0123456789\n")


def test_frames() -> None:
    assert frame({"type": "ping"}, "ping") == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert frame({"a": 1}) == b'data: {"a":1}\n\n'
    assert frame(b"[DONE]") == b"data: [DONE]\n\n"
    assert feed_all(SSEParser(), [COMMENT_KEEPALIVE]) == []
