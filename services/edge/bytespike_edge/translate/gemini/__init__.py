"""The Gemini native codec (reference/protocols.md §5): client side and upstream side."""

from __future__ import annotations

from collections.abc import Mapping

from bytespike_common.errors import GatewayError
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.gemini.decode import decode_count_tokens, decode_request
from bytespike_edge.translate.gemini.encode import encode_count_tokens, encode_request
from bytespike_edge.translate.gemini.errors import decode_error, render_error
from bytespike_edge.translate.gemini.response import (
    count_tokens_response,
    decode_response,
    encode_response,
    read_count_tokens,
    rewrite_model,
    sniff_usage,
)
from bytespike_edge.translate.gemini.stream import StreamDecoder, StreamEncoder, UsageSniffer
from bytespike_edge.translate.ir import JSON, IRRequest, IRResponse, Usage, WireProtocol

__all__ = [
    "CODEC",
    "GeminiCodec",
    "StreamDecoder",
    "StreamEncoder",
    "UsageSniffer",
    "count_tokens_response",
    "decode_count_tokens",
    "decode_error",
    "decode_request",
    "decode_response",
    "encode_count_tokens",
    "encode_request",
    "encode_response",
    "read_count_tokens",
    "render_error",
    "rewrite_model",
    "sniff_usage",
]


class GeminiCodec:
    protocol = WireProtocol.GEMINI

    def decode_request(self, body: JSON) -> IRRequest:
        return decode_request(body)

    def decode_count_tokens(self, body: JSON) -> IRRequest:
        return decode_count_tokens(body)

    def encode_request(self, req: IRRequest, upstream_model: str) -> JSON:
        return encode_request(req, upstream_model)

    def decode_response(self, body: JSON, ctx: TranslationContext | None = None) -> IRResponse:
        return decode_response(body, ctx)

    def encode_response(
        self, resp: IRResponse, model: str, ctx: TranslationContext | None = None
    ) -> JSON:
        return encode_response(resp, model, ctx)

    def stream_decoder(self, ctx: TranslationContext | None = None) -> StreamDecoder:
        return StreamDecoder(ctx)

    def stream_encoder(self, model: str, ctx: TranslationContext | None = None) -> StreamEncoder:
        return StreamEncoder(model, ctx)

    def render_error(
        self, err: GatewayError, request_id: str | None = None
    ) -> tuple[int, JSON, dict[str, str]]:
        return render_error(err, request_id)

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return decode_error(status, body, headers)

    def rewrite_model(self, body: JSON, upstream_model: str) -> JSON:
        return rewrite_model(body, upstream_model)

    def sniff_usage(self, body: JSON) -> Usage | None:
        return sniff_usage(body)

    def usage_sniffer(self, client_body: JSON) -> UsageSniffer:
        return UsageSniffer()


CODEC = GeminiCodec()
