"""The codec for each wire protocol."""

from __future__ import annotations

from bytespike_edge.translate import anthropic, gemini, openai_chat
from bytespike_edge.translate.codec import Codec
from bytespike_edge.translate.ir import WireProtocol

CODECS: dict[WireProtocol, Codec] = {
    WireProtocol.ANTHROPIC: anthropic.CODEC,
    WireProtocol.OPENAI: openai_chat.CODEC,
    WireProtocol.GEMINI: gemini.CODEC,
}


def codec_for(protocol: WireProtocol | str) -> Codec:
    """The codec for `protocol` ("anthropic" | "openai" | "gemini")."""
    return CODECS[WireProtocol(protocol)]
