"""Images, documents and audio across pairs (reference §11 cases 33-36)."""

from __future__ import annotations

import pytest

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate.context import parts_needing_fetch
from bytespike_edge.translate.ir import WireProtocol
from bytespike_edge.translate.registry import codec_for
from tests.edge.translate.helpers import gemini_valid, translate

PNG = "iVBORw0KGgo="
PDF = "JVBERi0xLjQ="


def test_case_33_openai_images_to_anthropic() -> None:
    body = {
        "model": "gpt-x",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                    },
                ],
            }
        ],
    }
    out, _ = translate("openai", "anthropic", body)
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_case_34_anthropic_images_and_pdf_to_gemini() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                    },
                ],
            }
        ],
    }
    req = translate("anthropic", "anthropic", body)[1]
    assert [p.url for p in parts_needing_fetch(req, WireProtocol.GEMINI)] == [
        "https://example.com/cat.jpg"
    ]
    with pytest.raises(InvalidRequest, match="must be fetched"):
        translate("anthropic", "gemini", body)
    out, _ = translate("anthropic", "gemini", body, gemini_media_urls=True)
    assert out["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.jpg"}},
    ]
    gemini_valid(out)


def test_fetched_media_is_sent_inline() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}}],
            }
        ],
    }
    req = codec_for("anthropic").decode_request(body)
    for part in parts_needing_fetch(req, WireProtocol.GEMINI):
        part.data, part.media_type = "AAAA", "image/jpeg"  # what the caller's fetch hook does
    out = codec_for("gemini").encode_request(req, "up-model")
    assert out["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}
    ]


def test_case_35_gemini_media_to_openai() -> None:
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {"inline_data": {"mime_type": "application/pdf", "data": PDF}},
                    {"text": "Describe"},
                ],
            }
        ]
    }
    out, _ = translate("gemini", "openai", body)
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {
                    "type": "file",
                    "file": {
                        "file_data": f"data:application/pdf;base64,{PDF}",
                        "filename": "document.pdf",
                    },
                },
                {"type": "text", "text": "Describe"},
            ],
        }
    ]


def test_case_36_audio_to_anthropic_is_refused() -> None:
    body = {
        "model": "gpt-x",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
                ],
            }
        ],
    }
    with pytest.raises(InvalidRequest, match="audio input is not supported"):
        translate("openai", "anthropic", body)
    out, _ = translate("openai", "gemini", body)
    assert out["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}}
    ]


def test_unsupported_image_type_for_anthropic_is_refused() -> None:
    body = {"contents": [{"parts": [{"inlineData": {"mimeType": "image/heic", "data": "AAAA"}}]}]}
    with pytest.raises(InvalidRequest, match="heic"):
        translate("gemini", "anthropic", body)


def test_provider_file_ids_do_not_cross_vendors() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}],
            }
        ],
    }
    for upstream in ("openai", "gemini"):
        with pytest.raises(InvalidRequest, match="file ids"):
            translate("anthropic", upstream, body)
