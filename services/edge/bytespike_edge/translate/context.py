"""Per-request translation state: reversible tool-name and call-id rewriting, options.

A client's tool names and call ids may be illegal for the upstream vendor (reference §6.3,
§6.4, §9 items 6-7). The upstream codec rewrites them while encoding the request and maps
them back while decoding the response, through the maps held here. Rewrites are
deterministic, so a client echoing history in a later request gets the same upstream names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass, field

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate.ir import (
    JSON,
    DocumentPart,
    ImagePart,
    IRRequest,
    Signature,
    ToolResultPart,
    WireProtocol,
)

# Tool names: A and O allow [A-Za-z0-9_-]{1,64}; Gemini must start with a letter or "_",
# may add "." and ":", up to 128 (reference §5.1, §6.3).
_NAME_RULES: dict[WireProtocol, tuple[re.Pattern[str], re.Pattern[str], int]] = {
    WireProtocol.ANTHROPIC: (
        re.compile(r"^[A-Za-z0-9_-]{1,64}$"),
        re.compile(r"[^A-Za-z0-9_-]"),
        64,
    ),
    WireProtocol.OPENAI: (re.compile(r"^[A-Za-z0-9_-]{1,64}$"), re.compile(r"[^A-Za-z0-9_-]"), 64),
    WireProtocol.GEMINI: (
        re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$"),
        re.compile(r"[^A-Za-z0-9_.:-]"),
        128,
    ),
}
_ANTHROPIC_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_OPENAI_MAX_ID = 40
_ENCODED_ID_PREFIX = "gwid_"
_SIGNATURE_TAG = "gw1"


def _digest(value: str, size: int) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:size]


class NameMap:
    """Client tool name ↔ upstream tool name, for one request."""

    def __init__(self) -> None:
        self._rule: tuple[re.Pattern[str], re.Pattern[str], int] | None = None
        self._up: dict[str, str] = {}
        self._client: dict[str, str] = {}

    def configure(self, upstream: WireProtocol, names: list[str]) -> None:
        """Adopt the upstream's rules; legal names claim themselves before any rewrite."""
        self._rule = _NAME_RULES[upstream]
        self._up.clear()
        self._client.clear()
        legal = [n for n in names if self._rule[0].match(n)]
        for name in legal:
            self._bind(name, name)
        for name in names:
            self.to_upstream(name)

    def _bind(self, client: str, upstream: str) -> None:
        self._up[client] = upstream
        self._client[upstream] = client

    def to_upstream(self, name: str) -> str:
        if name in self._up:
            return self._up[name]
        if self._rule is None:
            return name
        legal, illegal_char, limit = self._rule
        candidate = name
        if not legal.match(name):
            candidate = illegal_char.sub("_", name) or "tool"
            if not re.match(r"[A-Za-z_]", candidate):
                candidate = "_" + candidate
        if len(candidate) > limit or candidate in self._client:
            candidate = f"{candidate[: limit - 9]}_{_digest(name, 8)}"
        self._bind(name, candidate)
        return candidate

    def to_client(self, name: str) -> str:
        return self._client.get(name, name)


def encode_id(value: str) -> str:
    """A reversible spelling of `value` in Anthropic's id charset."""
    payload = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    return f"{_ENCODED_ID_PREFIX}{payload}"


def decode_id(value: str) -> str:
    """Undo `encode_id`; any other id is returned unchanged."""
    if not value.startswith(_ENCODED_ID_PREFIX):
        return value
    payload = value[len(_ENCODED_ID_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return value
    return raw if encode_id(raw) == value else value


class IdMap:
    """Client call id ↔ upstream call id, for one request."""

    def __init__(self, client: WireProtocol) -> None:
        self.client = client
        self.upstream: WireProtocol | None = None
        self._client_of: dict[str, str] = {}

    def to_upstream(self, call_id: str) -> str | None:
        """The id to send; None when the upstream links calls by name (Gemini)."""
        if self.upstream is WireProtocol.GEMINI:
            return None
        out = call_id
        if self.upstream is WireProtocol.ANTHROPIC and not _ANTHROPIC_ID.match(call_id):
            out = encode_id(call_id)
        elif self.upstream is WireProtocol.OPENAI:
            out = decode_id(call_id)
            if len(out) > _OPENAI_MAX_ID:
                # OpenAI rejects ids over 40 chars (string_above_max_length, reference §3.2).
                out = "call_" + _digest(out, 32)
        self._client_of[out] = call_id
        return out

    def to_client(self, call_id: str | None) -> str:
        """The id the client sees for an upstream call id; mints one when there is none."""
        if not call_id:
            # Gemini clients link calls by name; only A and O clients need an id.
            return "" if self.client is WireProtocol.GEMINI else self.mint()
        if call_id in self._client_of:
            return self._client_of[call_id]
        if self.client is WireProtocol.ANTHROPIC and not _ANTHROPIC_ID.match(call_id):
            return encode_id(call_id)
        return call_id

    def mint(self) -> str:
        prefix = "toolu_" if self.client is WireProtocol.ANTHROPIC else "call_"
        return prefix + secrets.token_hex(12)


def tag_signature(signature: Signature, client: WireProtocol) -> str:
    """The value a client may hold: raw for the minting vendor's clients, tagged otherwise.

    The tag lets a later request restore it for the same vendor or strip it (§6.8 rule 1).
    """
    if signature.vendor is client:
        return signature.value
    return f"{_SIGNATURE_TAG}:{signature.vendor.value}:{signature.value}"


def parse_signature(value: str, default: WireProtocol) -> Signature:
    """Read a signature a client echoed back, recognising gateway tags."""
    head, _, rest = value.partition(":")
    if head == _SIGNATURE_TAG:
        vendor, _, raw = rest.partition(":")
        if vendor in WireProtocol.__members__.values() and raw:
            return Signature(WireProtocol(vendor), raw)
    return Signature(default, value)


def is_tagged_signature(value: str) -> bool:
    return value.startswith(_SIGNATURE_TAG + ":")


@dataclass(slots=True)
class TranslationContext:
    """Options and rewrite maps for one request, shared by its request and response codecs.

    Created by the client codec's `decode_request` (with the client-side options it reads,
    e.g. `include_usage`); the caller may adjust options before `encode_request`, then
    passes the same object to the upstream decoder and the client encoder.
    """

    client: WireProtocol
    upstream: WireProtocol | None = None
    # Output cap for upstreams that require one (Anthropic) when the client sent none;
    # set it from the catalog's model limits.
    default_max_tokens: int = 8192
    # O client asked `stream_options.include_usage`.
    include_usage: bool = False
    # Reasoning text goes to the client: G `includeThoughts`, O `reasoning_content` opt-in.
    include_thoughts: bool = False
    # Vendor-hosted tools towards another vendor: False → 400, True → dropped with a warning.
    drop_builtin_tools: bool = False
    # Gemini upstream: send `parametersJsonSchema` instead of the sanitised `parameters`.
    gemini_json_schema: bool = False
    # Gemini upstream accepts https URLs as `fileData` (otherwise the caller inlines them).
    gemini_media_urls: bool = False
    # OpenAI upstream: the output-cap field; some OpenAI-compatible vendors know only
    # the legacy `max_tokens`, OpenAI reasoning models only `max_completion_tokens`.
    openai_max_tokens_field: str = "max_completion_tokens"
    names: NameMap = field(default_factory=NameMap)
    ids: IdMap = field(init=False)
    # Human-readable notes on fields that were approximated or dropped (for a warning header).
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids = IdMap(self.client)

    def begin(self, upstream: WireProtocol, tool_names: list[str]) -> None:
        """Called by an upstream codec when it starts encoding a request."""
        self.upstream = upstream
        self.ids.upstream = upstream
        self.names.configure(upstream, tool_names)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


MediaPart = ImagePart | DocumentPart


def parts_needing_fetch(req: IRRequest, upstream: WireProtocol) -> list[MediaPart]:
    """URL media the upstream cannot take by URL; the caller downloads and fills `data`."""
    found: list[MediaPart] = []
    for message in req.messages:
        for part in message.parts:
            candidates = part.content if isinstance(part, ToolResultPart) else [part]
            for item in candidates:
                if (
                    isinstance(item, ImagePart | DocumentPart)
                    and item.needs_fetch
                    and _url_unsupported(item, upstream, req.ctx.gemini_media_urls)
                ):
                    found.append(item)
    return found


def _url_unsupported(part: MediaPart, upstream: WireProtocol, gemini_urls: bool) -> bool:
    if upstream is WireProtocol.GEMINI:
        return not gemini_urls
    # Chat Completions `file` parts take only inline data or file ids.
    return upstream is WireProtocol.OPENAI and isinstance(part, DocumentPart)


# Client fields that change what the model must produce: another vendor cannot honour
# them, so they are refused instead of dropped (DESIGN §4 fidelity rule).
_UNPORTABLE: dict[WireProtocol, dict[str, str]] = {
    WireProtocol.OPENAI: {
        "audio": "audio output",
        "functions": "legacy `functions` (use `tools`)",
        "function_call": "legacy `function_call` (use `tool_choice`)",
        "web_search_options": "hosted web search",
    },
    WireProtocol.ANTHROPIC: {
        "container": "code-execution containers",
        "mcp_servers": "remote MCP servers",
    },
    WireProtocol.GEMINI: {
        "cachedContent": "explicit context caches",
        "cached_content": "explicit context caches",
    },
}


def settle_extras(req: IRRequest, upstream: WireProtocol) -> JSON:
    """The client-only fields to send: all of them to the same protocol; otherwise a 400
    for one that matters, a warning for each advisory one dropped."""
    client = req.ctx.client
    if client is upstream:
        return dict(req.extras)
    for key, value in req.extras.items():
        feature = _UNPORTABLE[client].get(key)
        if key == "modalities" and isinstance(value, list) and any(v != "text" for v in value):
            feature = "non-text output modalities"
        if feature is not None:
            raise InvalidRequest(
                f"{key}: {feature} cannot be served by a {upstream.value} model", param=key
            )
        req.ctx.warn(f"{key} dropped: no {upstream.value} equivalent")
    return {}
