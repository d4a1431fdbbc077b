"""The symmetric surface every protocol codec offers (DESIGN §4).

A client codec decodes the caller's request and encodes the response for it; an upstream
codec encodes the request for the vendor and decodes what comes back. Three codecs serve
all nine client-upstream pairs; the `TranslationContext` on the request links both ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from bytespike_common.errors import GatewayError
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.ir import (
    JSON,
    IRRequest,
    IRResponse,
    StreamEvent,
    Usage,
    WireProtocol,
)


class StreamDecoder(Protocol):
    """Upstream SSE events in, IR stream events out."""

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        """One parsed SSE event (its `event:` name, if any, and its data string)."""
        ...

    def close(self) -> list[StreamEvent]:
        """The upstream body ended; emits the finish, or an error if the stream was cut."""
        ...

    @property
    def usage(self) -> Usage | None:
        """Latest cumulative usage seen, for billing even when the client went away."""
        ...


class StreamEncoder(Protocol):
    """IR stream events in, bytes ready to write to the client out."""

    def encode(self, event: StreamEvent) -> bytes: ...

    def keepalive(self) -> bytes:
        """A frame the client's SDK ignores, to keep idle connections open (§8)."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """The protocol's in-stream error frame (the HTTP status was already sent)."""
        ...


class UsageSniffer(Protocol):
    """Reads usage from a same-protocol (passthrough) stream without decoding it."""

    def feed(self, event: str | None, data: str) -> bool:
        """Observe one event; False when the frame must not be relayed to the client."""
        ...

    @property
    def usage(self) -> Usage | None: ...


class Codec(Protocol):
    protocol: WireProtocol

    def decode_request(self, body: JSON) -> IRRequest: ...

    def decode_count_tokens(self, body: JSON) -> IRRequest: ...

    def encode_request(self, req: IRRequest, upstream_model: str) -> JSON: ...

    def decode_response(self, body: JSON, ctx: TranslationContext | None = None) -> IRResponse: ...

    def encode_response(
        self, resp: IRResponse, model: str, ctx: TranslationContext | None = None
    ) -> JSON: ...

    def stream_decoder(self, ctx: TranslationContext | None = None) -> StreamDecoder: ...

    def stream_encoder(
        self, model: str, ctx: TranslationContext | None = None
    ) -> StreamEncoder: ...

    def render_error(
        self, err: GatewayError, request_id: str | None = None
    ) -> tuple[int, JSON, dict[str, str]]: ...

    def decode_error(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> GatewayError: ...

    def rewrite_model(self, body: JSON, upstream_model: str) -> JSON: ...

    def sniff_usage(self, body: JSON) -> Usage | None: ...

    def usage_sniffer(self, client_body: JSON) -> UsageSniffer:
        """For a passthrough stream; `client_body` is the request as the client sent it."""
        ...
