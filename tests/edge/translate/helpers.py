"""Shared test helpers: run a pair through the codecs, validate Gemini bodies strictly."""

from __future__ import annotations

from typing import Any

from google.genai import types as gtypes

from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.ir import IRRequest, IRResponse, StreamEvent, WireProtocol
from bytespike_edge.translate.registry import codec_for
from bytespike_edge.translate.sse import SSEParser

JSON = dict[str, Any]


def translate(client: str, upstream: str, body: JSON, **options: Any) -> tuple[JSON, IRRequest]:
    """Client body → IR → upstream body; `options` set TranslationContext fields first."""
    req = codec_for(client).decode_request(body)
    for key, value in options.items():
        setattr(req.ctx, key, value)
    return codec_for(upstream).encode_request(req, "up-model"), req


def respond(upstream: str, client: str, body: JSON, req: IRRequest | None = None) -> JSON:
    """Upstream response body → IR → client response body."""
    ctx = req.ctx if req is not None else TranslationContext(client=WireProtocol(client))
    resp: IRResponse = codec_for(upstream).decode_response(body, ctx)
    return codec_for(client).encode_response(resp, "client-model", ctx)


def relay(
    upstream: str, client: str, frames: list[tuple[str | None, str]], req: IRRequest
) -> bytes:
    """Feed recorded upstream SSE events through decoder and encoder; the client's bytes."""
    decoder = codec_for(upstream).stream_decoder(req.ctx)
    encoder = codec_for(client).stream_encoder("client-model", req.ctx)
    out = b""
    for event, data in frames:
        for ir in decoder.feed(event, data):
            out += encoder.encode(ir)
    for ir in decoder.close():
        out += encoder.encode(ir)
    return out


def decode_all(
    upstream: str, frames: list[tuple[str | None, str]], req: IRRequest
) -> list[StreamEvent]:
    decoder = codec_for(upstream).stream_decoder(req.ctx)
    events: list[StreamEvent] = []
    for event, data in frames:
        events.extend(decoder.feed(event, data))
    return events + decoder.close()


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    parser = SSEParser()
    return [(e.event, e.data) for e in parser.feed(raw) + parser.close()]


def gemini_valid(body: JSON) -> None:
    """Validate a Gemini request body with google-genai's models, which forbid unknown
    fields: a misspelt or foreign field fails here."""
    for content in body["contents"]:
        gtypes.Content.model_validate(content)
    if "systemInstruction" in body:
        gtypes.Content.model_validate(body["systemInstruction"])
    for tool in body.get("tools", []):
        gtypes.Tool.model_validate(tool)
    if "toolConfig" in body:
        gtypes.ToolConfig.model_validate(body["toolConfig"])
    if "generationConfig" in body:
        gtypes.GenerationConfig.model_validate(body["generationConfig"])
