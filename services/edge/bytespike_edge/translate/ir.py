"""The internal representation (IR) every codec decodes into and encodes from.

One request shape, one response shape and one stream-event vocabulary, independent of the
wire protocol (reference/protocols.md §6). Codecs guarantee that an IR event stream is
well formed: at most one block open at a time, block indexes contiguous from 0, every
`BlockStart` closed by a `BlockStop`, a single terminal `Finish` or `StreamError`.

Plain slotted dataclasses: the IR sits on the hot path of every translated request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeAlias

from bytespike_common.errors import GatewayError

if TYPE_CHECKING:
    from bytespike_edge.translate.context import TranslationContext

JSON: TypeAlias = dict[str, Any]


class WireProtocol(StrEnum):
    """A client or upstream protocol; values match `UsageEvent.client_protocol`."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GEMINI = "gemini"


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(slots=True, frozen=True)
class Signature:
    """An opaque reasoning-continuation token, valid only for the vendor that minted it."""

    vendor: WireProtocol
    value: str


# --- content parts -------------------------------------------------------------------------


@dataclass(slots=True)
class TextPart:
    text: str
    cache_control: JSON | None = None


@dataclass(slots=True)
class ImagePart:
    """Inline (`data` base64 + `media_type`), by `url`, or a provider `file_id`.

    A URL part whose target cannot take URLs "needs fetch": the caller downloads it and
    fills `data` and `media_type` before encoding (see `context.parts_needing_fetch`).
    """

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    detail: str | None = None
    cache_control: JSON | None = None

    @property
    def needs_fetch(self) -> bool:
        return self.data is None and self.url is not None


@dataclass(slots=True)
class DocumentPart:
    """A PDF (inline or URL), a plain-text document, or a provider file."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    text: str | None = None
    title: str | None = None
    filename: str | None = None
    cache_control: JSON | None = None

    @property
    def needs_fetch(self) -> bool:
        return self.data is None and self.text is None and self.url is not None


@dataclass(slots=True)
class AudioPart:
    data: str
    format: str  # "wav" | "mp3" | ... (the subtype of the audio media type)


@dataclass(slots=True)
class ToolCallPart:
    """A call the model made. `raw_arguments` keeps a string that was not valid JSON."""

    id: str
    name: str
    arguments: JSON
    raw_arguments: str | None = None
    signature: Signature | None = None


ToolResultContent: TypeAlias = TextPart | ImagePart | DocumentPart


@dataclass(slots=True)
class ToolResultPart:
    call_id: str
    content: list[ToolResultContent]
    is_error: bool = False
    # The called function's name, recovered from the assistant turn (Gemini links by name).
    name: str | None = None
    cache_control: JSON | None = None


@dataclass(slots=True)
class ThinkingPart:
    text: str
    signature: Signature | None = None


@dataclass(slots=True)
class RedactedThinkingPart:
    data: str
    vendor: WireProtocol = WireProtocol.ANTHROPIC


@dataclass(slots=True)
class OpaquePart:
    """Content only `protocol` understands (server-tool blocks, executable code, ...).

    Kept so a same-protocol upstream receives it unchanged; any other upstream's encoder
    refuses it with a 400 rather than dropping it.
    """

    protocol: WireProtocol
    data: JSON


Part: TypeAlias = (
    TextPart
    | ImagePart
    | DocumentPart
    | AudioPart
    | ToolCallPart
    | ToolResultPart
    | ThinkingPart
    | RedactedThinkingPart
    | OpaquePart
)


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


# --- request -------------------------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    """A client-defined function; `parameters` is plain JSON Schema (lower-case types)."""

    name: str
    description: str | None = None
    parameters: JSON | None = None
    strict: bool | None = None
    cache_control: JSON | None = None


@dataclass(slots=True)
class BuiltinTool:
    """A vendor-hosted tool (server tool, googleSearch, ...): same-protocol upstreams only."""

    protocol: WireProtocol
    spec: JSON


class ToolChoiceMode(StrEnum):
    AUTO = "auto"
    ANY = "any"  # must call some tool (O "required", G ANY)
    NONE = "none"
    TOOL = "tool"  # must call `name`


@dataclass(slots=True)
class ToolChoice:
    mode: ToolChoiceMode
    name: str | None = None
    # A subset the model may choose from (O allowed_tools, G allowedFunctionNames).
    allowed: list[str] | None = None


@dataclass(slots=True)
class GenerationParams:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ResponseFormatType(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass(slots=True)
class ResponseFormat:
    type: ResponseFormatType
    schema: JSON | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


class ReasoningMode(StrEnum):
    DISABLED = "disabled"
    ENABLED = "enabled"  # with a token budget
    ADAPTIVE = "adaptive"  # the model decides; optional effort


@dataclass(slots=True)
class Reasoning:
    mode: ReasoningMode
    budget_tokens: int | None = None
    effort: str | None = None  # "minimal" | "low" | "medium" | "high" | "xhigh" | "max"


@dataclass(slots=True)
class IRRequest:
    """A generation (or token-count) request. `ctx` carries per-request translation state."""

    model: str
    messages: list[Message]
    ctx: TranslationContext
    system: list[TextPart] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    builtin_tools: list[BuiltinTool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    stream: bool = False
    user: str | None = None
    metadata: dict[str, str] | None = None
    # Fields only the protocol in `ctx.client` understands; sent to that protocol only.
    extras: JSON = field(default_factory=dict)


# --- response ------------------------------------------------------------------------------


class FinishReason(StrEnum):
    """Why generation stopped, in one vocabulary (reference §7.1)."""

    END_TURN = "end_turn"
    STOP_SEQUENCE = "stop_sequence"
    MAX_TOKENS = "max_tokens"
    TOOL_USE = "tool_use"
    CONTENT_FILTER = "content_filter"
    PAUSE_TURN = "pause_turn"
    CONTEXT_WINDOW_EXCEEDED = "context_window_exceeded"
    MALFORMED_TOOL_CALL = "malformed_tool_call"
    OTHER = "other"


@dataclass(slots=True)
class Usage:
    """Canonical usage (usage.proto): input excludes cache reads and writes; output
    includes reasoning."""

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


@dataclass(slots=True)
class IRResponse:
    id: str
    model: str
    parts: list[Part]
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    stop_sequence: str | None = None
    created: int | None = None


def finish_with_tools(reason: FinishReason, parts: list[Part] | bool) -> FinishReason:
    """A turn that made tool calls ended for tool use, whatever the upstream said (§7.1)."""
    has_calls = (
        parts if isinstance(parts, bool) else any(isinstance(p, ToolCallPart) for p in parts)
    )
    if has_calls and reason in (
        FinishReason.END_TURN,
        FinishReason.STOP_SEQUENCE,
        FinishReason.OTHER,
    ):
        return FinishReason.TOOL_USE
    return reason


# --- stream events -------------------------------------------------------------------------


@dataclass(slots=True)
class MessageStart:
    id: str
    model: str
    usage: Usage | None = None


@dataclass(slots=True)
class BlockStart:
    """Opens block `index`: an empty TextPart / ThinkingPart, a ToolCallPart with `{}`
    arguments (they follow as `ToolArgsDelta`), or a complete RedactedThinkingPart."""

    index: int
    part: TextPart | ThinkingPart | ToolCallPart | RedactedThinkingPart


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(slots=True)
class ThinkingDelta:
    index: int
    text: str


@dataclass(slots=True)
class SignatureDelta:
    index: int
    signature: Signature


@dataclass(slots=True)
class ToolArgsDelta:
    index: int
    partial_json: str


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class UsageUpdate:
    """Cumulative usage so far (overwrites, never adds)."""

    usage: Usage


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    usage: Usage | None = None
    stop_sequence: str | None = None


@dataclass(slots=True)
class StreamError:
    error: GatewayError


StreamEvent: TypeAlias = (
    MessageStart
    | BlockStart
    | TextDelta
    | ThinkingDelta
    | SignatureDelta
    | ToolArgsDelta
    | BlockStop
    | UsageUpdate
    | Finish
    | StreamError
)
