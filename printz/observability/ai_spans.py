"""The spans of an agent turn's model and tool calls, and what goes on them.

``ModelCall`` and ``ToolCall`` are made by ``AgentTrace.start_chat`` and
``AgentTrace.tool_span`` (printz/observability/ai.py, which documents the whole
API); ``track_token_usage`` and ``track_tool_calls`` put usage, cost and tool
counts on any span.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sentry_sdk
from flask import current_app, has_app_context
from sentry_sdk.consts import OP, SPANDATA, SPANSTATUS
from sentry_sdk.tracing import Span

from printz.observability.scrub import ai_content_allowed
from printz.observability.streaming import CANCELLED, FAILED, OK
from printz.observability.tokens import (
    ModelPrice,
    TokenUsage,
    cost_of,
    parse_price_table,
    price_of,
)

if TYPE_CHECKING:
    from printz.observability.ai import AgentTrace

ORIGIN = "manual.printz.ai"
STATUSES = frozenset(
    value for name, value in vars(SPANSTATUS).items() if not name.startswith("_")
)
# Short keyword names accepted for span attributes; other names are used as given.
ATTRIBUTE_NAMES = {
    "agent": SPANDATA.GEN_AI_AGENT_NAME,
    "provider": SPANDATA.GEN_AI_PROVIDER_NAME,
    "model": SPANDATA.GEN_AI_REQUEST_MODEL,
    "response_model": SPANDATA.GEN_AI_RESPONSE_MODEL,
    "conversation_id": SPANDATA.GEN_AI_CONVERSATION_ID,
    "streaming": SPANDATA.GEN_AI_RESPONSE_STREAMING,
    "temperature": SPANDATA.GEN_AI_REQUEST_TEMPERATURE,
    "max_tokens": SPANDATA.GEN_AI_REQUEST_MAX_TOKENS,
}
COST_INPUT = "gen_ai.cost.input_tokens"
COST_OUTPUT = "gen_ai.cost.output_tokens"
COST_TOTAL = "gen_ai.cost.total_tokens"


def check_status(status: str) -> str:
    """The status if Sentry knows it; ValueError naming the known ones."""
    if status not in STATUSES:
        raise ValueError(
            f"span status {status!r}: use one of {', '.join(sorted(STATUSES))}"
        )
    return status


def outcome_of(error_type: type[BaseException] | None) -> str:
    """How a block ended: ``ok``, ``cancelled`` (GeneratorExit) or failed."""
    if error_type is None:
        return OK
    if issubclass(error_type, GeneratorExit):
        return CANCELLED
    return FAILED


def as_json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


class ModelCall:
    """One model call: a ``gen_ai.chat`` span named ``chat <model>``."""

    def __init__(
        self,
        trace: AgentTrace,
        model: str | None,
        streaming: bool,
        attributes: dict[str, Any],
    ) -> None:
        self.trace = trace
        self.model = model
        self.usage = TokenUsage()
        self.ended = False
        self._active = ActiveSpan()
        self._started_at = time.monotonic()
        self._first_token_s: float | None = None
        self.span = trace.span.start_child(
            op=OP.GEN_AI_CHAT, name=f"chat {model or 'model'}", origin=ORIGIN
        )
        set_attributes(
            self.span,
            {
                SPANDATA.GEN_AI_OPERATION_NAME: "chat",
                SPANDATA.GEN_AI_PROVIDER_NAME: trace.provider,
                SPANDATA.GEN_AI_REQUEST_MODEL: model,
                SPANDATA.GEN_AI_RESPONSE_STREAMING: streaming,
                SPANDATA.GEN_AI_CONVERSATION_ID: trace.conversation_id,
                **attributes,
            },
        )

    def first_token(self) -> None:
        """Record the time to first token, the first time only."""
        if self._first_token_s is None:
            self._first_token_s = time.monotonic() - self._started_at
            self.span.set_data(
                SPANDATA.GEN_AI_RESPONSE_TIME_TO_FIRST_TOKEN, self._first_token_s
            )

    def record_usage(self, usage: Any) -> TokenUsage:
        """Add usage reported by the model; the turn's totals follow."""
        tokens = TokenUsage.of(usage)
        self.usage = self.usage + tokens
        self.trace.usage = self.trace.usage + tokens
        track_token_usage(self.span, self.usage, self.model, prices=self.trace.prices)
        return tokens

    def end(
        self,
        status: str = OK,
        *,
        finish_reason: str | Sequence[str] | None = None,
        response_model: str | None = None,
    ) -> None:
        if self.ended:
            return
        self.ended = True
        if finish_reason:
            reasons = (
                [finish_reason] if isinstance(finish_reason, str) else finish_reason
            )
            self.span.set_data(SPANDATA.GEN_AI_RESPONSE_FINISH_REASONS, list(reasons))
        self.span.set_data(SPANDATA.GEN_AI_RESPONSE_MODEL, response_model or self.model)
        self.span.set_status(check_status(status))
        self.span.finish()
        self._active.leave()
        self.trace.call_ended(self)

    def __enter__(self) -> ModelCall:
        self._active.enter(self.span)
        return self

    def __exit__(self, error_type: Any, error: Any, traceback: Any) -> None:
        self.end(outcome_of(error_type))


class ToolCall:
    """One tool call: a ``gen_ai.execute_tool`` span named ``execute_tool <tool>``."""

    def __init__(
        self, trace: AgentTrace, name: str, call_id: str | None, arguments: Any
    ) -> None:
        self.trace = trace
        self.name = name
        self.ended = False
        self._active = ActiveSpan()
        self._status: str | None = None
        self.span = trace.span.start_child(
            op=OP.GEN_AI_EXECUTE_TOOL, name=f"execute_tool {name}", origin=ORIGIN
        )
        set_attributes(
            self.span,
            {
                SPANDATA.GEN_AI_OPERATION_NAME: "execute_tool",
                SPANDATA.GEN_AI_TOOL_NAME: name,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": call_id,
                SPANDATA.GEN_AI_AGENT_NAME: trace.agent,
                SPANDATA.GEN_AI_CONVERSATION_ID: trace.conversation_id,
            },
        )
        if arguments is not None and ai_content_allowed():
            self.span.set_data(SPANDATA.GEN_AI_TOOL_CALL_ARGUMENTS, as_json(arguments))

    def succeed(self, output: Any = None) -> None:
        """The tool answered; its output is recorded only if content is allowed."""
        if output is not None and ai_content_allowed():
            self.span.set_data(SPANDATA.GEN_AI_TOOL_CALL_RESULT, as_json(output))
        self._status = OK

    def fail(self, status: str = FAILED, message: str | None = None) -> None:
        """The tool refused or broke: ``failed_precondition``, ``internal_error``..."""
        self._status = check_status(status)
        if message:
            self.span.set_data("printz.tool.error", message)

    def end(self, status: str | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        self.span.set_status(check_status(status or self._status or OK))
        self.span.finish()
        self._active.leave()
        self.trace.call_ended(self)

    def __enter__(self) -> ToolCall:
        self._active.enter(self.span)
        return self

    def __exit__(self, error_type: Any, error: Any, traceback: Any) -> None:
        if error_type is not None:
            self.end(outcome_of(error_type))
        else:
            self.end()


class ActiveSpan:
    """Makes a span the active one of the current scope while a block runs.

    Works on the scope object, as ``Span.__enter__`` does, not on the context
    variable: inside a streamed body the same scope is re-entered for every
    chunk, so a block may span several ``yield``s.
    """

    def __init__(self) -> None:
        self._scope: sentry_sdk.Scope | None = None
        self._previous: Any = None

    def enter(self, span: Span) -> None:
        self._scope = sentry_sdk.get_current_scope()
        self._previous = self._scope.span
        self._scope.span = span

    def leave(self) -> None:
        if self._scope is not None:
            self._scope.span = self._previous
            self._scope = None


def set_attributes(span: Span, attributes: dict[str, Any]) -> None:
    """Set the attributes that have a value, short names translated."""
    for key, value in attributes.items():
        if value is not None:
            span.set_data(ATTRIBUTE_NAMES.get(key, key), value)


def track_token_usage(
    span: Span,
    usage: Any,
    model: str | None,
    *,
    prices: dict[str, ModelPrice] | None = None,
) -> TokenUsage:
    """Put token counts and, when the model is priced, their cost on a span.

    ``usage`` is anything ``TokenUsage.of`` reads (an OpenAI usage object, a
    dict). Sets ``gen_ai.usage.input_tokens``, ``output_tokens``,
    ``total_tokens``, ``input_tokens.cached``, ``output_tokens.reasoning`` and
    ``gen_ai.cost.input_tokens``, ``output_tokens``, ``total_tokens`` (USD).
    ``prices`` defaults to the ``PRINTZ_MODEL_PRICES`` of the current app.
    """
    tokens = TokenUsage.of(usage)
    span.set_data(SPANDATA.GEN_AI_USAGE_INPUT_TOKENS, tokens.input_tokens)
    span.set_data(SPANDATA.GEN_AI_USAGE_OUTPUT_TOKENS, tokens.output_tokens)
    span.set_data(SPANDATA.GEN_AI_USAGE_TOTAL_TOKENS, tokens.total_tokens)
    span.set_data(SPANDATA.GEN_AI_USAGE_INPUT_TOKENS_CACHED, tokens.cached_tokens)
    span.set_data(
        SPANDATA.GEN_AI_USAGE_OUTPUT_TOKENS_REASONING, tokens.reasoning_tokens
    )
    price = price_of(model, price_table() if prices is None else prices)
    if price is not None:
        cost = cost_of(tokens, price)
        span.set_data(COST_INPUT, cost.input)
        span.set_data(COST_OUTPUT, cost.output)
        span.set_data(COST_TOTAL, cost.total)
    return tokens


def track_tool_calls(span: Span, calls: int | Iterable[Any]) -> int:
    """Record how many tool calls (and which tools) a turn or model call made.

    ``calls`` is a count, or tool calls as names, dicts or OpenAI tool-call
    objects. Names go to ``printz.ai.tools``; arguments never do.
    """
    if isinstance(calls, int):
        span.set_data("printz.ai.tool_calls", calls)
        return calls
    names = [_tool_name(call) for call in calls]
    span.set_data("printz.ai.tool_calls", len(names))
    if names:
        span.set_data("printz.ai.tools", sorted(set(names)))
    return len(names)


def _tool_name(call: Any) -> str:
    if isinstance(call, str):
        return call
    if isinstance(call, dict):
        function = call.get("function") or {}
        return str(call.get("name") or function.get("name") or "unknown")
    function = getattr(call, "function", None)
    return str(getattr(call, "name", None) or getattr(function, "name", "unknown"))


def price_table() -> dict[str, ModelPrice]:
    """``PRINTZ_MODEL_PRICES`` of the current app; empty outside one."""
    if not has_app_context():
        return {}
    try:
        return parse_price_table(current_app.config.get("PRINTZ_MODEL_PRICES"))
    except ValueError:
        # Start-up validated it; a value changed at run time is not priced.
        return {}
