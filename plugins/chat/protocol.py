"""The AI SDK "UI message stream" protocol v1, written and remembered.

``UIMessageStream`` turns each chunk into one Server-Sent Event and applies the
same chunk to the assistant message it is building, so what is stored is
exactly what the customer's ``useChat`` assembled from the stream.
"""

from __future__ import annotations

import json
from typing import Any

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}
KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"

# The values every AI SDK version from 5 to 7 accepts.
FINISH_REASONS = frozenset(
    {"stop", "length", "content-filter", "tool-calls", "error", "other"}
)
_OPENAI_FINISH = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}


def finish_reason(openai_reason: str | None) -> str:
    """Map an OpenAI finish reason onto one every client accepts."""
    return _OPENAI_FINISH.get(openai_reason or "", "other")


def encode(chunk: dict[str, Any]) -> bytes:
    body = json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
    return b"data: " + body.encode() + b"\n\n"


class UIMessageStream:
    """Encodes chunks for the wire and keeps the assistant message's parts."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.parts: list[dict[str, Any]] = []
        self._open_text: dict[str, Any] | None = None
        self._tools: dict[str, dict[str, Any]] = {}
        self._text_count = 0

    @property
    def text(self) -> str:
        return "".join(p["text"] for p in self.parts if p["type"] == "text")

    def emit(self, chunk: dict[str, Any]) -> bytes:
        self._apply(chunk)
        return encode(chunk)

    def start(self, metadata: dict[str, Any]) -> bytes:
        return self.emit(
            {"type": "start", "messageId": self.message_id, "messageMetadata": metadata}
        )

    def start_step(self) -> bytes:
        return self.emit({"type": "start-step"})

    def text_delta(self, delta: str) -> bytes:
        """A text delta, opening a text part first when none is open."""
        out = b""
        if self._open_text is None:
            self._text_count += 1
            out += self.emit({"type": "text-start", "id": f"text-{self._text_count}"})
        return out + self.emit(
            {"type": "text-delta", "id": self._open_text["id"], "delta": delta}
        )

    def end_text(self) -> bytes:
        if self._open_text is None:
            return b""
        return self.emit({"type": "text-end", "id": self._open_text["id"]})

    def tool_input_start(self, call_id: str, name: str) -> bytes:
        return self.end_text() + self.emit(
            {"type": "tool-input-start", "toolCallId": call_id, "toolName": name}
        )

    def tool_input_delta(self, call_id: str, fragment: str) -> bytes:
        return self.emit(
            {
                "type": "tool-input-delta",
                "toolCallId": call_id,
                "inputTextDelta": fragment,
            }
        )

    def tool_input_available(self, call_id: str, name: str, arguments: Any) -> bytes:
        return self.emit(
            {
                "type": "tool-input-available",
                "toolCallId": call_id,
                "toolName": name,
                "input": arguments,
            }
        )

    def tool_input_error(
        self, call_id: str, name: str, raw: str, error_text: str
    ) -> bytes:
        return self.emit(
            {
                "type": "tool-input-error",
                "toolCallId": call_id,
                "toolName": name,
                "input": raw,
                "errorText": error_text,
            }
        )

    def tool_output(self, call_id: str, output: Any) -> bytes:
        return self.emit(
            {"type": "tool-output-available", "toolCallId": call_id, "output": output}
        )

    def tool_error(self, call_id: str, error_text: str) -> bytes:
        return self.emit(
            {
                "type": "tool-output-error",
                "toolCallId": call_id,
                "errorText": error_text,
            }
        )

    def finish_step(self) -> bytes:
        return self.end_text() + self.emit({"type": "finish-step"})

    def error(self, error_text: str) -> bytes:
        return self.end_text() + self.emit({"type": "error", "errorText": error_text})

    def finish(self, reason: str, metadata: dict[str, Any]) -> bytes:
        assert reason in FINISH_REASONS, reason
        return self.end_text() + self.emit(
            {"type": "finish", "finishReason": reason, "messageMetadata": metadata}
        )

    def unanswered_tool_calls(self) -> list[str]:
        return [
            call_id
            for call_id, part in self._tools.items()
            if part["state"] not in ("output-available", "output-error")
        ]

    def _apply(self, chunk: dict[str, Any]) -> None:
        """Update the remembered parts the way the client's assembler does."""
        kind = chunk["type"]
        if kind == "start-step":
            self.parts.append({"type": "step-start"})
        elif kind == "text-start":
            self._open_text = {"type": "text", "id": chunk["id"], "text": ""}
            self._open_text["state"] = "streaming"
            self.parts.append(self._open_text)
        elif kind == "text-delta":
            self._open_text["text"] += chunk["delta"]
        elif kind == "text-end":
            self._open_text["state"] = "done"
            self._open_text = None
        elif kind == "tool-input-start":
            part = {
                "type": f"tool-{chunk['toolName']}",
                "toolCallId": chunk["toolCallId"],
                "state": "input-streaming",
                "input": None,
            }
            self._tools[chunk["toolCallId"]] = part
            self.parts.append(part)
        elif kind in ("tool-input-available", "tool-input-error"):
            part = self._tools[chunk["toolCallId"]]
            part["input"] = chunk["input"]
            if kind == "tool-input-available":
                part["state"] = "input-available"
            else:
                part["state"] = "output-error"
                part["errorText"] = chunk["errorText"]
        elif kind == "tool-output-available":
            part = self._tools[chunk["toolCallId"]]
            part.update(state="output-available", output=chunk["output"])
        elif kind == "tool-output-error":
            part = self._tools[chunk["toolCallId"]]
            part.update(state="output-error", errorText=chunk["errorText"])

    def stored_parts(self) -> list[dict[str, Any]]:
        """The parts as they are saved: text parts lose their stream-local ids."""
        stored = []
        for part in self.parts:
            if part["type"] == "text":
                stored.append({"type": "text", "text": part["text"], "state": "done"})
            else:
                stored.append(dict(part))
        return stored
