"""Case 29: every row of the tool_choice matrix (reference §6.5) for every client/upstream pair."""

from __future__ import annotations

from typing import Any

import pytest

from tests.edge.translate.helpers import gemini_valid, translate

NAMES = ["x", "y", "z"]
SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}}


def client_body(client: str, fragment: dict[str, Any]) -> dict[str, Any]:
    """A request declaring tools x, y, z with the client-specific tool_choice fragment."""
    if client == "anthropic":
        tools: list[Any] = [{"name": n, "input_schema": SCHEMA} for n in NAMES]
        return {
            "model": "m",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "go"}],
            "tools": tools,
            **fragment,
        }
    if client == "openai":
        tools = [{"type": "function", "function": {"name": n, "parameters": SCHEMA}} for n in NAMES]
        return {
            "model": "m",
            "messages": [{"role": "user", "content": "go"}],
            "tools": tools,
            **fragment,
        }
    declarations = [{"name": n, "parametersJsonSchema": SCHEMA} for n in NAMES]
    return {
        "contents": [{"parts": [{"text": "go"}]}],
        "tools": [{"functionDeclarations": declarations}],
        **fragment,
    }


def observed(upstream: str, out: dict[str, Any]) -> tuple[Any, ...]:
    if upstream == "anthropic":
        return out.get("tool_choice"), [t["name"] for t in out["tools"]]
    if upstream == "openai":
        return (
            out.get("tool_choice"),
            out.get("parallel_tool_calls"),
            [t["function"]["name"] for t in out["tools"]],
        )
    gemini_valid(out)
    names = [d["name"] for d in out["tools"][0]["functionDeclarations"]]
    return out.get("toolConfig", {}).get("functionCallingConfig"), names


ALLOWED_XY_AUTO = {
    "type": "allowed_tools",
    "allowed_tools": {
        "mode": "auto",
        "tools": [
            {"type": "function", "function": {"name": "x"}},
            {"type": "function", "function": {"name": "y"}},
        ],
    },
}
ALLOWED_XY_REQUIRED = {
    "type": "allowed_tools",
    "allowed_tools": {
        "mode": "required",
        "tools": [
            {"type": "function", "function": {"name": "x"}},
            {"type": "function", "function": {"name": "y"}},
        ],
    },
}

# intent → client forms and what each upstream must receive.
MATRIX: dict[str, dict[str, Any]] = {
    "model decides": {
        "clients": {
            "anthropic": {"tool_choice": {"type": "auto"}},
            "openai": {"tool_choice": "auto"},
            "gemini": {"toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}},
        },
        "anthropic": ({"type": "auto"}, NAMES),
        "openai": ("auto", None, NAMES),
        "gemini": ({"mode": "AUTO"}, NAMES),
    },
    "must call some tool": {
        "clients": {
            "anthropic": {"tool_choice": {"type": "any"}},
            "openai": {"tool_choice": "required"},
            "gemini": {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
        },
        "anthropic": ({"type": "any"}, NAMES),
        "openai": ("required", None, NAMES),
        "gemini": ({"mode": "ANY"}, NAMES),
    },
    "must call tool y": {
        "clients": {
            "anthropic": {"tool_choice": {"type": "tool", "name": "y"}},
            "openai": {"tool_choice": {"type": "function", "function": {"name": "y"}}},
            "gemini": {
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["y"]}
                }
            },
        },
        "anthropic": ({"type": "tool", "name": "y"}, NAMES),
        "openai": ({"type": "function", "function": {"name": "y"}}, None, NAMES),
        "gemini": ({"mode": "ANY", "allowedFunctionNames": ["y"]}, NAMES),
    },
    "no tools": {
        "clients": {
            "anthropic": {"tool_choice": {"type": "none"}},
            "openai": {"tool_choice": "none"},
            "gemini": {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}},
        },
        "anthropic": ({"type": "none"}, NAMES),
        "openai": ("none", None, NAMES),
        "gemini": ({"mode": "NONE"}, NAMES),
    },
    "subset, optional": {
        "clients": {"openai": {"tool_choice": ALLOWED_XY_AUTO}},
        "anthropic": ({"type": "auto"}, ["x", "y"]),
        "openai": (ALLOWED_XY_AUTO, None, NAMES),
        "gemini": ({"mode": "AUTO"}, ["x", "y"]),
    },
    "subset, required": {
        "clients": {
            "openai": {"tool_choice": ALLOWED_XY_REQUIRED},
            "gemini": {
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["x", "y"]}
                }
            },
        },
        "anthropic": ({"type": "any"}, ["x", "y"]),
        "openai": (ALLOWED_XY_REQUIRED, None, NAMES),
        "gemini": ({"mode": "ANY", "allowedFunctionNames": ["x", "y"]}, NAMES),
    },
    "at most one call": {
        "clients": {
            "anthropic": {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
            "openai": {"tool_choice": "auto", "parallel_tool_calls": False},
        },
        "anthropic": ({"type": "auto", "disable_parallel_tool_use": True}, NAMES),
        "openai": ("auto", False, NAMES),
        "gemini": ({"mode": "AUTO"}, NAMES),  # no equivalent: dropped with a warning
    },
}

CASES = [
    pytest.param(intent, client, upstream, id=f"{intent}:{client}->{upstream}")
    for intent, row in MATRIX.items()
    for client in row["clients"]
    for upstream in ("anthropic", "openai", "gemini")
]


@pytest.mark.parametrize(("intent", "client", "upstream"), CASES)
def test_tool_choice_matrix(intent: str, client: str, upstream: str) -> None:
    row = MATRIX[intent]
    out, req = translate(client, upstream, client_body(client, row["clients"][client]))
    assert observed(upstream, out) == row[upstream]
    if intent == "at most one call" and upstream == "gemini":
        assert req.ctx.warnings == ["parallel_tool_calls=false dropped: Gemini has no equivalent"]
