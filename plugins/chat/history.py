"""Stored UI messages -> the model's chat messages.

The server owns the history: only stored messages are replayed to the model,
never assistant or tool parts a client sends.
"""

from __future__ import annotations

import json
from typing import Any

SYSTEM_PROMPT = (
    "You are the shopping assistant of Printz, an online print shop selling "
    "business cards, flyers, posters, stickers, banners and booklets. Help the "
    "customer choose products and options, give prices only from the "
    "quote_price tool, and look orders up only with get_order_status. Prices "
    "are in cents in tool results; show them to the customer as money. Be brief."
)


def text_of(parts: list[dict[str, Any]]) -> str:
    return "".join(
        part.get("text", "")
        for part in parts
        if part.get("type") == "text" and isinstance(part.get("text"), str)
    )


def _steps(parts: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    steps: list[list[dict[str, Any]]] = [[]]
    for part in parts:
        if part.get("type") == "step-start":
            if steps[-1]:
                steps.append([])
            continue
        steps[-1].append(part)
    return [step for step in steps if step]


def _tool_result(part: dict[str, Any]) -> str | None:
    """The result the model saw for a tool part; None if it never got one."""
    if part.get("state") == "output-available":
        return json.dumps(part.get("output"), separators=(",", ":"))
    if part.get("state") == "output-error":
        return json.dumps({"error": part.get("errorText", "tool failed")})
    return None


def assistant_messages(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One assistant message per step, each followed by its tool results.

    Tool calls that never got a result (the customer pressed stop) are left out:
    the model API rejects a tool call without an answer.
    """
    messages: list[dict[str, Any]] = []
    for step in _steps(parts):
        text = text_of(step)
        calls, results = [], []
        for part in step:
            if not str(part.get("type", "")).startswith("tool-"):
                continue
            result = _tool_result(part)
            if result is None:
                continue
            call_id = part["toolCallId"]
            arguments = part.get("input")
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": part["type"].removeprefix("tool-"),
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else json.dumps(arguments or {}),
                    },
                }
            )
            results.append({"role": "tool", "tool_call_id": call_id, "content": result})
        if not text and not calls:
            continue
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        messages.append(message)
        messages.extend(results)
    return messages


def model_messages(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The whole conversation as the model API wants it, system prompt first."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for message in stored:
        if message["role"] == "user":
            messages.append({"role": "user", "content": text_of(message["parts"])})
        elif message["role"] == "assistant":
            messages.extend(assistant_messages(message["parts"]))
    return messages
