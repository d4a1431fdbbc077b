"""Reasoning knobs across vendors: token budgets ↔ effort levels (reference §6.8).

The thresholds are the gateway's policy, not vendor definitions: budget < 2k is `low`,
< 8k `medium`, < 24k `high`, else `xhigh`; an effort asks Anthropic for a budget of about
2k / 8k / 16k / 32k / 64k and Gemini for the same budget capped at 24,576 (the largest
budget every thinking Gemini model accepts).
"""

from __future__ import annotations

from bytespike_edge.translate.ir import Reasoning, ReasoningMode

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
ANTHROPIC_MIN_BUDGET = 1024
_BUDGET_FOR_EFFORT = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}
_GEMINI_MAX_BUDGET = 24576
DEFAULT_EFFORT = "medium"


def effort_for_budget(budget: int) -> str:
    if budget < 2048:
        return "low"
    if budget < 8192:
        return "medium"
    if budget < 24576:
        return "high"
    return "xhigh"


def budget_for_effort(effort: str | None) -> int:
    return _BUDGET_FOR_EFFORT.get(effort or DEFAULT_EFFORT, _BUDGET_FOR_EFFORT[DEFAULT_EFFORT])


def openai_effort(reasoning: Reasoning) -> str | None:
    """`reasoning_effort` for an OpenAI upstream; None leaves the model's default."""
    if reasoning.mode is ReasoningMode.DISABLED:
        # "none"/"minimal" are model dependent and non-reasoning models reject the field
        # altogether; leaving it out is the one choice every model accepts.
        return None
    if reasoning.effort:
        return reasoning.effort
    if reasoning.mode is ReasoningMode.ENABLED and reasoning.budget_tokens is not None:
        return effort_for_budget(reasoning.budget_tokens)
    return DEFAULT_EFFORT


def anthropic_budget(reasoning: Reasoning) -> int | None:
    """A thinking budget for an Anthropic upstream; None means thinking off."""
    if reasoning.mode is ReasoningMode.DISABLED or reasoning.effort in ("none",):
        return None
    if reasoning.mode is ReasoningMode.ENABLED and reasoning.budget_tokens is not None:
        return reasoning.budget_tokens
    if reasoning.effort == "minimal":
        return None
    return budget_for_effort(reasoning.effort)


def gemini_budget(reasoning: Reasoning) -> int:
    """`thinkingBudget`: 0 off, -1 dynamic, else tokens."""
    if reasoning.mode is ReasoningMode.DISABLED or reasoning.effort in ("none", "minimal"):
        return 0
    if reasoning.mode is ReasoningMode.ENABLED and reasoning.budget_tokens is not None:
        return reasoning.budget_tokens
    if reasoning.effort is None:
        return -1
    return min(budget_for_effort(reasoning.effort), _GEMINI_MAX_BUDGET)


def from_gemini(budget: int | None, level: str | None) -> Reasoning | None:
    if level:
        return Reasoning(ReasoningMode.ADAPTIVE, effort=level.lower())
    if budget is None:
        return None
    if budget == 0:
        return Reasoning(ReasoningMode.DISABLED)
    if budget < 0:
        return Reasoning(ReasoningMode.ADAPTIVE)
    return Reasoning(ReasoningMode.ENABLED, budget_tokens=budget)
