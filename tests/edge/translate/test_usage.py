"""Vendor usage ↔ canonical usage, with the reference's example numbers (§7.2)."""

from __future__ import annotations

from bytespike_edge.translate import usage
from bytespike_edge.translate.ir import Usage

# The same request seen by each vendor: 1,831 prompt tokens of which 1,800 cached, 96 output
# tokens of which 40 reasoning (reference §2.3, §3.3, §5.2).
CANONICAL = Usage(input_tokens=31, cache_read_tokens=1800, output_tokens=96, reasoning_tokens=40)


def test_from_anthropic() -> None:
    raw = {
        "input_tokens": 31,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1800,
        "output_tokens": 96,
        "output_tokens_details": {"thinking_tokens": 40},
    }
    assert usage.from_anthropic(raw) == CANONICAL


def test_from_openai_subtracts_cached_from_prompt() -> None:
    raw = {
        "prompt_tokens": 1831,
        "completion_tokens": 96,
        "total_tokens": 1927,
        "prompt_tokens_details": {"cached_tokens": 1800},
        "completion_tokens_details": {"reasoning_tokens": 40},
    }
    assert usage.from_openai(raw) == CANONICAL


def test_from_openai_cache_writes_are_not_uncached_input() -> None:
    raw = {
        "prompt_tokens": 1000,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 600},
    }
    assert usage.from_openai(raw) == Usage(
        input_tokens=300, cache_read_tokens=100, cache_write_tokens=600
    )


def test_from_gemini_adds_thoughts_to_output() -> None:
    raw = {
        "promptTokenCount": 1831,
        "cachedContentTokenCount": 1800,
        "candidatesTokenCount": 56,
        "thoughtsTokenCount": 40,
        "totalTokenCount": 1927,
    }
    assert usage.from_gemini(raw) == CANONICAL


def test_from_gemini_counts_tool_use_prompt_and_snake_case() -> None:
    raw = {
        "prompt_token_count": 100,
        "tool_use_prompt_token_count": 20,
        "candidates_token_count": 5,
    }
    assert usage.from_gemini(raw) == Usage(input_tokens=120, output_tokens=5)


def test_garbage_counts_read_as_zero() -> None:
    raw = {"prompt_tokens": "12", "completion_tokens": -3, "prompt_tokens_details": None}
    assert usage.from_openai(raw) == Usage()


def test_to_anthropic() -> None:
    assert usage.to_anthropic(CANONICAL) == {
        "input_tokens": 31,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1800,
        "output_tokens": 96,
        "output_tokens_details": {"thinking_tokens": 40},
    }


def test_to_openai() -> None:
    assert usage.to_openai(CANONICAL) == {
        "prompt_tokens": 1831,
        "completion_tokens": 96,
        "total_tokens": 1927,
        "prompt_tokens_details": {"cached_tokens": 1800},
        "completion_tokens_details": {"reasoning_tokens": 40},
    }


def test_to_gemini_keeps_thoughts_out_of_candidates() -> None:
    assert usage.to_gemini(CANONICAL) == {
        "promptTokenCount": 1831,
        "cachedContentTokenCount": 1800,
        "candidatesTokenCount": 56,
        "thoughtsTokenCount": 40,
        "totalTokenCount": 1927,
    }


def test_anthropic_delta_usage_overwrites_present_keys_only() -> None:
    start = usage.from_anthropic(
        {"input_tokens": 31, "cache_read_input_tokens": 1800, "output_tokens": 1}
    )
    merged = usage.merge_anthropic(start, {"output_tokens": 96})
    assert merged == Usage(input_tokens=31, cache_read_tokens=1800, output_tokens=96)
    late = usage.merge_anthropic(merged, {"input_tokens": 50, "output_tokens": 100})
    assert late == Usage(input_tokens=50, cache_read_tokens=1800, output_tokens=100)
