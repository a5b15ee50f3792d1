"""Tracing AI work the way Sentry's AI Agents and Conversations views read it.

One agent turn is one ``AgentTrace``; Sentry shows it as a span tree in the
request's trace::

    http.server  /api/chat                      the request, held open while
    └─ gen_ai.invoke_agent  invoke_agent <agent>  the answer streams
       ├─ gen_ai.chat          chat <model>        one per model call
       ├─ gen_ai.execute_tool  execute_tool <tool> one per tool call
       └─ db / cache spans of the work done meanwhile

Each span carries ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model`` and, where they apply, ``gen_ai.response.model``,
``gen_ai.usage.*`` tokens and ``gen_ai.cost.*`` dollars,
``gen_ai.response.time_to_first_token`` (seconds),
``gen_ai.response.finish_reasons``, ``gen_ai.response.streaming``,
``gen_ai.tool.name`` and ``gen_ai.conversation.id``. Statuses are ``ok``,
``internal_error`` or ``cancelled`` (the customer went away or pressed stop).
Prompts, answers, tool arguments and tool results are recorded only when the
``SENTRY_SEND_AI_CONTENT`` setting allows it.

A streamed turn, as the chat route does it::

    trace = ai.trace_ai_operation(
        "printz-assistant", model=model, conversation_id=conversation_id
    )
    trace.start()                         # in the view: the turn starts now
    call = trace.start_chat(model=model)  # a model call may begin in the view

    def body():                           # runs after the view has returned
        for chunk in model_stream:
            if chunk.text:
                trace.first_token(call)   # time to first token, once per call
                yield sse(chunk)
            if chunk.usage:
                trace.chat_usage(call, chunk.usage)  # tokens and cost
        trace.end_chat(call, finish_reason="tool_calls")
        with trace.tool_span("search_products", call_id) as tool:
            tool.succeed(run_tool())      # or tool.fail("failed_precondition")
        ...

    return Response(ai.ai_stream(stream_with_context(body()), trace))

``ai_stream`` keeps the request's transaction and the turn open until the last
byte is sent or the client goes away, and ends the turn ``ok`` (body
exhausted), ``internal_error`` (body raised: reported once, re-raised) or
``cancelled`` (the server closed the body early: ``GeneratorExit`` at the
body's pending ``yield``, whose ``finally`` then runs inside the trace). A body
may end the turn itself with ``trace.finish(outcome)``, for instance after
turning a model failure into an ``error`` chunk; ``ai_stream`` then keeps
that outcome. A model or tool call still open when the turn ends is closed
with the turn's outcome.

A turn that does not stream is a block::

    with ai.trace_ai_operation("catalog-writer", model=model) as trace:
        with trace.start_chat(model=model) as call:
            answer = client.chat.completions.create(...)
            trace.chat_usage(call, answer.usage)

Use these helpers rather than raw ``sentry_sdk.start_span`` inside a stream:
they name and parent spans across the view/body boundary, and they map
``GeneratorExit`` to ``cancelled`` where a raw span would say
``internal_error``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import sentry_sdk
from sentry_sdk.ai import set_conversation_id
from sentry_sdk.consts import OP, SPANDATA
from sentry_sdk.tracing import Span
from sentry_sdk.utils import event_from_exception

from printz.observability.ai_spans import (
    ATTRIBUTE_NAMES,
    ORIGIN,
    ModelCall,
    ToolCall,
    as_json,
    check_status,
    outcome_of,
    price_table,
    set_attributes,
    track_token_usage,
    track_tool_calls,
)
from printz.observability.context import (
    add_sentry_tags,
    clear_sentry_user,
    set_sentry_user,
)
from printz.observability.metrics import capture_metric
from printz.observability.scrub import ai_content_allowed
from printz.observability.streaming import CANCELLED, OK, TracedBody
from printz.observability.tokens import ModelPrice, TokenUsage, cost_of, price_of

__all__ = [
    "AgentTrace",
    "ModelCall",
    "TokenUsage",
    "ToolCall",
    "add_ai_breadcrumb",
    "add_sentry_tags",
    "ai_stream",
    "capture_ai_error",
    "capture_metric",
    "clear_sentry_user",
    "set_sentry_user",
    "token_cost",
    "trace_ai_operation",
    "track_token_usage",
    "track_tool_calls",
]

log = logging.getLogger(__name__)

DEFAULT_PROVIDER = "openai"  # the API every model server Printz uses speaks
# Breadcrumb data that would carry what the customer or the model said.
CONTENT_DATA = frozenset(
    {"prompt", "messages", "message", "answer", "text", "content", "arguments"}
)
CANCELLATION_REASON = "sentry.cancellation_reason"
# Error classes of the OpenAI client that mean the model server is down or
# refusing work: one Sentry issue per provider and model, not one per stack.
MODEL_OUTAGES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "InternalServerError",
        "RateLimitError",
    }
)


# -- the turn -------------------------------------------------------------------


class AgentTrace:
    """One agent turn: a ``gen_ai.invoke_agent`` span and its model and tool calls.

    ``agent`` names the span (``invoke_agent <agent>``). ``model``,
    ``provider`` (default ``openai``, the API the model server speaks) and
    ``conversation_id`` become span attributes and, with the agent name, tags
    of every event of the request; further keyword attributes are set on the
    span (see ``ATTRIBUTE_NAMES`` for short names, or pass ``gen_ai.*`` names).
    """

    def __init__(
        self,
        agent: str,
        *,
        model: str | None = None,
        provider: str | None = DEFAULT_PROVIDER,
        conversation_id: str | None = None,
        **attributes: Any,
    ) -> None:
        self.agent = agent
        self.model = model
        self.provider = provider
        self.conversation_id = None if conversation_id is None else str(conversation_id)
        self.span: Span | None = None
        self.status: str | None = None
        self.usage = TokenUsage()
        self.tool_calls = 0
        self._attributes = attributes
        self._reported_usage: TokenUsage | None = None
        self._started_at: float | None = None
        self._first_token_s: float | None = None
        self._open: list[ModelCall | ToolCall] = []
        self._prices: dict[str, ModelPrice] | None = None
        self._block: contextlib.ExitStack | None = None

    @property
    def started(self) -> bool:
        return self.span is not None

    @property
    def finished(self) -> bool:
        return self.status is not None

    def start(self) -> AgentTrace:
        """Open the turn's span under the current span (the request's, in a view).

        Outside a request a transaction of its own is started. Calling it again
        does nothing.
        """
        if self.span is not None:
            return self
        self._started_at = time.monotonic()
        # Read now, in the view: a streamed body may end after the app context.
        self._prices = price_table()
        name = f"invoke_agent {self.agent}"
        parent = sentry_sdk.get_current_span()
        if parent is not None:
            self.span = parent.start_child(
                op=OP.GEN_AI_INVOKE_AGENT, name=name, origin=ORIGIN
            )
        else:
            # A turn outside any request (a CLI command, a job): its own trace.
            self.span = sentry_sdk.start_transaction(
                op=OP.GEN_AI_INVOKE_AGENT, name=name, origin=ORIGIN, source="task"
            )
        set_attributes(
            self.span,
            {
                SPANDATA.GEN_AI_OPERATION_NAME: "invoke_agent",
                SPANDATA.GEN_AI_AGENT_NAME: self.agent,
                SPANDATA.GEN_AI_PROVIDER_NAME: self.provider,
                SPANDATA.GEN_AI_REQUEST_MODEL: self.model,
                SPANDATA.GEN_AI_CONVERSATION_ID: self.conversation_id,
                **self._attributes,
            },
        )
        if self.conversation_id:
            set_conversation_id(self.conversation_id)
        tags = {
            SPANDATA.GEN_AI_AGENT_NAME: self.agent,
            SPANDATA.GEN_AI_CONVERSATION_ID: self.conversation_id,
            SPANDATA.GEN_AI_REQUEST_MODEL: self.model,
        }
        add_sentry_tags(**{key: value for key, value in tags.items() if value})
        add_ai_breadcrumb(f"AI turn started: {self.agent}", model=self.model)
        return self

    def set_data(self, key: str, value: Any) -> None:
        """Set one attribute of the turn's span (short names allowed)."""
        if self.span is not None and value is not None:
            self.span.set_data(ATTRIBUTE_NAMES.get(key, key), value)

    # -- model calls --

    def start_chat(
        self,
        messages: Sequence[Any] | None = None,
        *,
        model: str | None = None,
        streaming: bool = True,
        **attributes: Any,
    ) -> ModelCall:
        """Open a ``gen_ai.chat`` span for one model call.

        Returns a ``ModelCall``: pass it to ``first_token``, ``chat_usage`` and
        ``end_chat``, or use it as a context manager. ``messages`` are recorded
        only when ``SENTRY_SEND_AI_CONTENT`` allows it.
        """
        self.start()
        call = ModelCall(self, model or self.model, streaming, attributes)
        if messages is not None and ai_content_allowed():
            call.span.set_data(SPANDATA.GEN_AI_REQUEST_MESSAGES, as_json(messages))
        self._open.append(call)
        return call

    def first_token(self, call: ModelCall | None = None) -> None:
        """The model's first token (or tool-call fragment) has arrived."""
        if call is not None:
            call.first_token()
        if self._first_token_s is None and self._started_at is not None:
            self._first_token_s = time.monotonic() - self._started_at
            self.set_data(
                SPANDATA.GEN_AI_RESPONSE_TIME_TO_FIRST_TOKEN, self._first_token_s
            )

    def chat_usage(self, call: ModelCall, usage: Any) -> TokenUsage:
        """Record a model call's token usage (any shape ``TokenUsage.of`` reads)."""
        return call.record_usage(usage)

    def end_chat(
        self,
        call: ModelCall | None,
        *,
        status: str = OK,
        finish_reason: str | Sequence[str] | None = None,
        response_model: str | None = None,
    ) -> None:
        """Close a model call with its status, finish reason and answering model."""
        if call is not None:
            call.end(
                status=status,
                finish_reason=finish_reason,
                response_model=response_model,
            )

    # -- tool calls --

    def tool_span(
        self, name: str, call_id: str | None = None, arguments: Any = None
    ) -> ToolCall:
        """Open a ``gen_ai.execute_tool`` span; a context manager, or end it by hand.

        ``arguments`` are recorded only when ``SENTRY_SEND_AI_CONTENT`` allows.
        """
        self.start()
        tool = ToolCall(self, name, call_id, arguments)
        self._open.append(tool)
        self.tool_calls += 1
        return tool

    def tool_outcome(
        self, name: str, call_id: str | None = None, *, status: str
    ) -> None:
        """Record a tool call that never ran (its arguments did not parse, say)."""
        self.tool_span(name, call_id).end(check_status(status))

    # -- totals and the end --

    def record_usage(self, usage: Any, *, tool_calls: int | None = None) -> None:
        """Set the turn's totals, when the caller counts them itself.

        Without it the turn adds up its model calls' usage. A usage dict with
        ``"estimated": True`` (tokens guessed after a stop) is marked so.
        """
        self._reported_usage = TokenUsage.of(usage)
        if isinstance(usage, dict) and usage.get("estimated"):
            self.set_data("printz.ai.usage_estimated", True)
        if tool_calls is not None:
            self.tool_calls = tool_calls

    def finish(self, outcome: str = OK, *, reason: str | None = None) -> None:
        """End the turn: ``ok``, ``internal_error``, ``cancelled`` or another status.

        Only the first call counts. Calls still open end with the same status.
        ``reason`` says why a cancelled turn stopped (``client_disconnected``).
        """
        if self.finished:
            return
        self.status = check_status(outcome)
        if self.span is None:
            return
        for still_open in list(self._open):
            still_open.end(outcome)
        usage = self._reported_usage or self.usage
        track_token_usage(self.span, usage, self.model, prices=self._prices)
        track_tool_calls(self.span, self.tool_calls)
        if outcome == CANCELLED and reason:
            self.span.set_data(CANCELLATION_REASON, reason)
        self.span.set_status(outcome)
        self.span.finish()
        self._count(usage)
        add_ai_breadcrumb(f"AI turn ended: {outcome}", agent=self.agent)

    def _count(self, usage: TokenUsage) -> None:
        labels = {"agent": self.agent, "model": self.model or "unknown"}
        capture_metric("printz.ai.turns", 1, outcome=self.status, **labels)
        capture_metric("printz.ai.input_tokens", usage.input_tokens, **labels)
        capture_metric("printz.ai.output_tokens", usage.output_tokens, **labels)
        capture_metric("printz.ai.tool_calls", self.tool_calls, **labels)
        price = price_of(self.model, self._prices or {})
        cost = cost_of(usage, price).total if price is not None else None
        if cost is not None:
            capture_metric("printz.ai.cost", cost, unit="usd", **labels)
        if self._first_token_s is not None:
            capture_metric(
                "printz.ai.time_to_first_token",
                self._first_token_s,
                kind="distribution",
                unit="second",
                **labels,
            )

    @property
    def prices(self) -> dict[str, ModelPrice]:
        """The price table the turn started with (read in the view)."""
        return self._prices or {}

    def call_ended(self, handle: ModelCall | ToolCall) -> None:
        """A model or tool call of this turn has ended."""
        if handle in self._open:
            self._open.remove(handle)

    def _end_stream(self, outcome: str, error: BaseException | None) -> str | None:
        """How ``ai_stream`` ends the turn; answers the request's final status."""
        if error is not None:
            capture_ai_error(
                error,
                conversation_id=self.conversation_id,
                model=self.model,
                stage="streaming",
                handled=False,
            )
        reason = "client_disconnected" if outcome == CANCELLED else None
        self.finish(outcome, reason=reason)
        return self.status

    # -- a block --

    def __enter__(self) -> AgentTrace:
        self.start()
        self._block = contextlib.ExitStack()
        scope = self._block.enter_context(sentry_sdk.new_scope())
        scope.span = self.span
        return self

    def __exit__(self, error_type: Any, error: Any, traceback: Any) -> None:
        try:
            self.finish(outcome_of(error_type))
        finally:
            if self._block is not None:
                self._block.close()
                self._block = None


# -- entry points -----------------------------------------------------------------


def trace_ai_operation(name: str, **attributes: Any) -> AgentTrace:
    """An agent turn named ``name``: a context manager, or hand it to ``ai_stream``.

    Attributes are those of ``AgentTrace`` (``model``, ``provider``,
    ``conversation_id``, any ``gen_ai.*`` name).
    """
    return AgentTrace(name, **attributes)


def ai_stream(
    body: Iterable[Any], trace: AgentTrace | str, **attributes: Any
) -> TracedBody:
    """Wrap a streaming response body so that one AI trace lasts the whole stream.

    ``trace`` is an ``AgentTrace`` (started here if it was not) or an agent name
    with its attributes. Call it in the view, where the request's transaction is
    current; return the result as the response body. The turn ends ``ok``,
    ``internal_error`` (the body raised: one Sentry event, the exception goes
    on) or ``cancelled`` (the client went away), unless the body ended it first.
    """
    if isinstance(trace, str):
        trace = AgentTrace(trace, **attributes)
    trace.start()
    trace.set_data(SPANDATA.GEN_AI_RESPONSE_STREAMING, True)
    return TracedBody(body, span=trace.span, on_end=trace._end_stream)


def capture_ai_error(
    error: BaseException,
    *,
    conversation_id: str | None = None,
    model: str | None = None,
    stage: str | None = None,
    provider: str = DEFAULT_PROVIDER,
    handled: bool = True,
    **tags: str,
) -> str | None:
    """Report an AI failure once and return its event id (None when Sentry is off).

    Tagged with the conversation, the model and the ``ai.stage`` (where in the
    turn it failed). A model server outage is fingerprinted per provider and
    model, so a thousand failing turns make one issue. ``handled=False`` marks
    an exception that went on to crash the response.
    """
    with sentry_sdk.new_scope() as scope:
        if conversation_id is not None:
            scope.set_tag(SPANDATA.GEN_AI_CONVERSATION_ID, str(conversation_id))
        if model is not None:
            scope.set_tag(SPANDATA.GEN_AI_REQUEST_MODEL, model)
        if stage is not None:
            scope.set_tag("ai.stage", stage)
        for key, value in tags.items():
            scope.set_tag(key, value)
        if {kind.__name__ for kind in type(error).__mro__} & MODEL_OUTAGES:
            scope.fingerprint = ["model-unavailable", provider, model or "unknown"]
        event, hint = event_from_exception(
            error,
            client_options=sentry_sdk.get_client().options,
            mechanism={"type": "printz.ai", "handled": handled},
        )
        return sentry_sdk.capture_event(event, hint=hint)


def add_ai_breadcrumb(message: str, *, level: str = "info", **data: Any) -> None:
    """A breadcrumb in the ``ai`` category; content-like data only if allowed."""
    allowed = ai_content_allowed()
    sentry_sdk.add_breadcrumb(
        category="ai",
        message=message,
        level=level,
        data={
            key: value
            for key, value in data.items()
            if value is not None and (allowed or key not in CONTENT_DATA)
        },
    )


def token_cost(model: str | None, usage: Any) -> float | None:
    """What a usage cost in US dollars at ``PRINTZ_MODEL_PRICES``; None if unpriced."""
    price = price_of(model, price_table())
    if price is None:
        return None
    return round(cost_of(TokenUsage.of(usage), price).total, 10)
