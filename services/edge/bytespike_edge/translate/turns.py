"""Conversation shaping shared by the Anthropic and Gemini encoders (reference §6.1, §9.2).

Both vendors want strictly alternating user/model turns that start with a user turn, and
want every tool result of a step together at the start of the next user turn.
"""

from __future__ import annotations

from bytespike_edge.translate.ir import Message, Part, Role, TextPart, ToolCallPart, ToolResultPart

PLACEHOLDER_USER_TEXT = "(continued)"


def merge_turns(messages: list[Message]) -> list[Message]:
    """Consecutive same-role messages become one; tool results lead their user turn."""
    merged: list[Message] = []
    for message in messages:
        if merged and merged[-1].role is message.role:
            merged[-1] = Message(message.role, merged[-1].parts + message.parts)
        else:
            merged.append(Message(message.role, list(message.parts)))
    for message in merged:
        if message.role is Role.USER:
            message.parts = _results_first(message.parts)
    if merged and merged[0].role is Role.ASSISTANT:
        merged.insert(0, Message(Role.USER, [TextPart(PLACEHOLDER_USER_TEXT)]))
    return merged


def _results_first(parts: list[Part]) -> list[Part]:
    results = [p for p in parts if isinstance(p, ToolResultPart)]
    if not results:
        return parts
    return [*results, *(p for p in parts if not isinstance(p, ToolResultPart))]


def current_turn_start(messages: list[Message]) -> int:
    """Index of the first message after the last user message that is not only tool results:
    the steps of the tool loop still in progress."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.role is Role.USER and any(
            not isinstance(p, ToolResultPart) for p in message.parts
        ):
            return i + 1
    return 0


def in_tool_loop(messages: list[Message]) -> bool:
    """The conversation ends with tool results answering the previous assistant turn."""
    if len(messages) < 2 or messages[-1].role is not Role.USER:
        return False
    last = messages[-1].parts
    return (
        bool(last)
        and isinstance(last[0], ToolResultPart)
        and any(isinstance(p, ToolCallPart) for p in messages[-2].parts)
    )
