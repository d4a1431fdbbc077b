"""The OpenAI Chat Completions codec (reference/protocols.md §3): client side and upstream side."""

from __future__ import annotations

from collections.abc import Mapping

from bytespike_common.errors import GatewayError, InvalidRequest
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.ir import JSON, IRRequest, IRResponse, Usage, WireProtocol
from bytespike_edge.translate.openai_chat.decode import decode_request
from bytespike_edge.translate.openai_chat.encode import encode_request
from bytespike_edge.translate.openai_chat.errors import decode_error, render_error
from bytespike_edge.translate.openai_chat.response import (
    decode_response,
    encode_response,
    rewrite_model,
    sniff_usage,
)
from bytespike_edge.translate.openai_chat.stream import StreamDecoder, StreamEncoder, UsageSniffer

__all__ = [
    "CODEC",
    "OpenAIChatCodec",
    "StreamDecoder",
    "StreamEncoder",
    "UsageSniffer",
    "decode_error",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "render_error",
    "rewrite_model",
    "sniff_usage",
]


class OpenAIChatCodec:
    protocol = WireProtocol.OPENAI

    def decode_request(self, body: JSON) -> IRRequest:
        return decode_request(body)

    def decode_count_tokens(self, body: JSON) -> IRRequest:
        raise InvalidRequest("Chat Completions has no token-counting endpoint")

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
        options = client_body.get("stream_options")
        return UsageSniffer(isinstance(options, dict) and options.get("include_usage") is True)


CODEC = OpenAIChatCodec()
