"""Vendor usage ↔ the canonical record (reference §2.3, §3.3, §5.2, §7.2).

Canonical (usage.proto): `input_tokens` is uncached input only, `output_tokens` includes
reasoning. Anthropic already counts that way; OpenAI's `prompt_tokens` includes cached
reads and writes; Gemini's `promptTokenCount` includes `cachedContentTokenCount` while
`candidatesTokenCount` excludes `thoughtsTokenCount`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bytespike_edge.translate.ir import JSON, Usage


def count(obj: Mapping[str, Any] | None, *keys: str) -> int:
    """The first non-negative int under one of `keys` (vendors disagree on casing), else 0."""
    # Exact type checks first: parsed JSON is dicts and ints, and an ABC check costs more
    # than the lookup (this runs for every counter of every answer).
    if type(obj) is not dict and not isinstance(obj, Mapping):
        return 0
    for key in keys:
        value = obj.get(key)
        if value is None:
            continue
        if type(value) is int:
            return value if value > 0 else 0
        if isinstance(value, int) and not isinstance(value, bool):
            return max(0, value)
        if isinstance(value, float) and value.is_integer():
            return max(0, int(value))
    return 0


def _sub(obj: Mapping[str, Any], *keys: str) -> Mapping[str, Any] | None:
    for key in keys:
        value = obj.get(key)
        if type(value) is dict or isinstance(value, Mapping):
            return value
    return None


# --- Anthropic -----------------------------------------------------------------------------


def from_anthropic(u: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=count(u, "input_tokens"),
        cache_read_tokens=count(u, "cache_read_input_tokens"),
        cache_write_tokens=count(u, "cache_creation_input_tokens"),
        output_tokens=count(u, "output_tokens"),
        reasoning_tokens=count(_sub(u, "output_tokens_details"), "thinking_tokens"),
    )


def merge_anthropic(base: Usage, delta: Mapping[str, Any]) -> Usage:
    """`message_delta.usage` is cumulative: present keys overwrite (reference §2.4)."""
    details = _sub(delta, "output_tokens_details")
    return Usage(
        input_tokens=count(delta, "input_tokens") if "input_tokens" in delta else base.input_tokens,
        cache_read_tokens=count(delta, "cache_read_input_tokens")
        if "cache_read_input_tokens" in delta
        else base.cache_read_tokens,
        cache_write_tokens=count(delta, "cache_creation_input_tokens")
        if "cache_creation_input_tokens" in delta
        else base.cache_write_tokens,
        output_tokens=count(delta, "output_tokens")
        if "output_tokens" in delta
        else base.output_tokens,
        reasoning_tokens=count(details, "thinking_tokens") if details else base.reasoning_tokens,
    )


def to_anthropic(u: Usage) -> JSON:
    out: JSON = {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


# --- OpenAI Chat ---------------------------------------------------------------------------


def from_openai(u: Mapping[str, Any]) -> Usage:
    prompt = _sub(u, "prompt_tokens_details")
    completion = _sub(u, "completion_tokens_details")
    cached = count(prompt, "cached_tokens")
    written = count(prompt, "cache_write_tokens")
    return Usage(
        input_tokens=max(0, count(u, "prompt_tokens") - cached - written),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=count(u, "completion_tokens"),
        reasoning_tokens=count(completion, "reasoning_tokens"),
    )


def to_openai(u: Usage) -> JSON:
    prompt_details: JSON = {"cached_tokens": u.cache_read_tokens}
    if u.cache_write_tokens:
        prompt_details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


# --- Gemini --------------------------------------------------------------------------------


def from_gemini(u: Mapping[str, Any]) -> Usage:
    prompt = count(u, "promptTokenCount", "prompt_token_count")
    tool_prompt = count(u, "toolUsePromptTokenCount", "tool_use_prompt_token_count")
    cached = count(u, "cachedContentTokenCount", "cached_content_token_count")
    thoughts = count(u, "thoughtsTokenCount", "thoughts_token_count")
    candidates = count(u, "candidatesTokenCount", "candidates_token_count")
    return Usage(
        input_tokens=max(0, prompt + tool_prompt - cached),
        cache_read_tokens=cached,
        output_tokens=candidates + thoughts,
        reasoning_tokens=thoughts,
    )


def to_gemini(u: Usage) -> JSON:
    # Gemini has no cache-write counter: writes are ordinary prompt tokens to its clients.
    out: JSON = {
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": max(0, u.output_tokens - u.reasoning_tokens),
        "totalTokenCount": u.total_tokens,
    }
    if u.cache_read_tokens:
        out["cachedContentTokenCount"] = u.cache_read_tokens
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    return out
