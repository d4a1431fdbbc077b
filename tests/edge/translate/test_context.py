"""Reversible name/id rewriting, signature tagging, fetch hooks (reference §6.3, §6.4, §6.8)."""

from __future__ import annotations

import re

import pytest

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate.context import (
    IdMap,
    NameMap,
    TranslationContext,
    decode_id,
    encode_id,
    parse_signature,
    parts_needing_fetch,
    settle_extras,
    tag_signature,
)
from bytespike_edge.translate.ir import (
    DocumentPart,
    ImagePart,
    IRRequest,
    Message,
    Role,
    Signature,
    ToolResultPart,
    WireProtocol,
)

A, OAI, G = WireProtocol.ANTHROPIC, WireProtocol.OPENAI, WireProtocol.GEMINI


def test_names_rewritten_for_anthropic_and_restored() -> None:
    names = NameMap()
    names.configure(A, ["mcp.server:read", "get_weather"])
    assert names.to_upstream("mcp.server:read") == "mcp_server_read"
    assert names.to_upstream("get_weather") == "get_weather"
    assert names.to_client("mcp_server_read") == "mcp.server:read"
    assert names.to_client("unknown_tool") == "unknown_tool"


def test_legal_names_keep_themselves_when_a_rewrite_collides() -> None:
    names = NameMap()
    names.configure(OAI, ["a.b", "a_b"])
    assert names.to_upstream("a_b") == "a_b"
    rewritten = names.to_upstream("a.b")
    assert re.fullmatch(r"a_b_[0-9a-f]{8}", rewritten)
    assert names.to_client(rewritten) == "a.b"


def test_long_names_are_truncated_with_a_stable_hash() -> None:
    long = "x" * 100
    first, second = NameMap(), NameMap()
    first.configure(A, [long])
    second.configure(A, [long])
    assert len(first.to_upstream(long)) == 64
    assert first.to_upstream(long) == second.to_upstream(long)


def test_gemini_names_allow_dots_but_must_start_with_a_letter() -> None:
    names = NameMap()
    names.configure(G, ["mcp.server:read", "1tool"])
    assert names.to_upstream("mcp.server:read") == "mcp.server:read"
    assert names.to_upstream("1tool") == "_1tool"


def test_ids_towards_anthropic_are_reversibly_encoded() -> None:
    ids = IdMap(OAI)
    ids.upstream = A
    upstream = ids.to_upstream("functions.read:0")
    assert upstream is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]+", upstream)
    assert decode_id(upstream) == "functions.read:0"
    assert ids.to_upstream("toolu_01") == "toolu_01"
    # The same id echoed back by the upstream maps to the client's original.
    assert ids.to_client(upstream) == "functions.read:0"


def test_ids_towards_openai_fit_40_chars_consistently() -> None:
    long = "fc_" + "a" * 60
    ids = IdMap(A)
    ids.upstream = OAI
    first = ids.to_upstream(long)
    assert first is not None
    assert len(first) <= 40
    assert first == ids.to_upstream(long)
    assert ids.to_upstream(encode_id("functions.read:0")) == "functions.read:0"


def test_ids_are_not_sent_to_gemini() -> None:
    ids = IdMap(A)
    ids.upstream = G
    assert ids.to_upstream("toolu_1") is None


def test_client_ids_are_minted_or_sanitised_per_client() -> None:
    assert re.fullmatch(r"toolu_[0-9a-f]{24}", IdMap(A).to_client(None))
    assert re.fullmatch(r"call_[0-9a-f]{24}", IdMap(OAI).to_client(""))
    assert IdMap(A).to_client("functions.read:0") == encode_id("functions.read:0")
    assert IdMap(OAI).to_client("functions.read:0") == "functions.read:0"


def test_decode_id_leaves_lookalikes_alone() -> None:
    assert decode_id("gwid_!!") == "gwid_!!"
    assert decode_id("toolu_01") == "toolu_01"


def test_signature_tags() -> None:
    gemini = Signature(G, "CiQBcsjafz")
    tagged = tag_signature(gemini, A)
    assert tagged == "gw1:gemini:CiQBcsjafz"
    assert parse_signature(tagged, A) == gemini
    assert tag_signature(Signature(A, "EpIB"), A) == "EpIB"
    assert parse_signature("EpIB", A) == Signature(A, "EpIB")
    assert parse_signature("gw1:nobody:x", A) == Signature(A, "gw1:nobody:x")


def _request(
    *parts: ImagePart | DocumentPart | ToolResultPart, client: WireProtocol = A
) -> IRRequest:
    return IRRequest("m", [Message(Role.USER, list(parts))], TranslationContext(client=client))


def test_parts_needing_fetch_per_upstream() -> None:
    url_image = ImagePart(url="https://example.com/cat.png")
    url_pdf = DocumentPart(url="https://example.com/a.pdf", media_type="application/pdf")
    inline = ImagePart(media_type="image/png", data="AAAA")
    nested = ImagePart(url="https://example.com/nested.png")
    req = _request(url_image, url_pdf, inline, ToolResultPart("c1", [nested]))
    assert parts_needing_fetch(req, A) == []
    assert parts_needing_fetch(req, OAI) == [url_pdf]
    assert parts_needing_fetch(req, G) == [url_image, url_pdf, nested]
    req.ctx.gemini_media_urls = True
    assert parts_needing_fetch(req, G) == []


def test_settle_extras() -> None:
    req = _request(client=OAI)
    req.extras = {"store": True, "service_tier": "flex"}
    assert settle_extras(req, OAI) == {"store": True, "service_tier": "flex"}
    assert settle_extras(req, A) == {}
    assert req.ctx.warnings == [
        "store dropped: no anthropic equivalent",
        "service_tier dropped: no anthropic equivalent",
    ]
    req.extras = {"modalities": ["text", "audio"]}
    with pytest.raises(InvalidRequest) as caught:
        settle_extras(req, G)
    assert caught.value.param == "modalities"
