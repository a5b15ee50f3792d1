"""One chat turn: model calls and tool calls relayed as a UI message stream.

The view primes the turn (the first model call is made and its first token
awaited before any byte is sent, so a failing model is an ordinary HTTP
error), then streams ``ChatTurn.body()``. The body ends one of three ways,
and each is saved and traced: complete, stopped by the customer (the client
closed the connection: GeneratorExit at a pending yield), or failed after the
first token (an ``error`` chunk the client shows).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
from flask import current_app

from plugins.chat import store
from plugins.chat.model import (
    ModelSilent,
    ModelStream,
    ModelUnavailable,
    open_model_stream,
)
from plugins.chat.protocol import DONE, KEEPALIVE, UIMessageStream, finish_reason
from plugins.chat.tools import ToolFailed, run_tool, tool_definitions
from printz.observability import ai
from printz.observability.tokens import TokenUsage

log = logging.getLogger(__name__)

AGENT_NAME = "printz-assistant"
CUSTOMER_ERROR = "The assistant ran into a problem and stopped. Please try again."


@dataclass
class ToolCall:
    call_id: str
    name: str
    arguments: str = ""


@dataclass
class StepResult:
    finish: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    text: str = ""


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, usage: Any) -> None:
        """Add one model call's usage as the OpenAI API reports it."""
        read = TokenUsage.of(usage)
        self.input_tokens += read.input_tokens
        self.output_tokens += read.output_tokens
        self.cached_tokens += read.cached_tokens
        self.reasoning_tokens += read.reasoning_tokens
        self.reported = True

    def for_client(self) -> dict[str, int]:
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.total_tokens,
        }

    def for_store(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "estimated": not self.reported,
        }


class ChatTurn:
    """Runs the assistant for one customer message and streams the answer."""

    def __init__(
        self,
        *,
        conversation: dict[str, Any],
        user: Any,
        model: str,
        messages: list[dict[str, Any]],
        assistant_message_id: str,
    ) -> None:
        config = current_app.config
        self.conversation = conversation
        self.user = user
        self.model = model
        self.messages = messages
        self.max_steps = config["PRINTZ_CHAT_MAX_STEPS"]
        self.keepalive = config["PRINTZ_CHAT_KEEPALIVE_S"]
        self.retries = config["PRINTZ_CHAT_RETRIES"]
        self.tools = tool_definitions()
        self.ui = UIMessageStream(assistant_message_id)
        self.usage = Usage()
        self.trace = ai.AgentTrace(
            agent=AGENT_NAME,
            model=model,
            conversation_id=conversation["_id"],
        )
        self._stream: ModelStream | None = None
        self._primed: list[Any] = []
        self._chat_span: Any = None
        self._saved = False
        self.event_id: str | None = None

    # -- before the first byte ------------------------------------------------

    def prime(self, meanwhile: Callable[[], object] | None = None) -> None:
        """Make the first model call and wait for its first token.

        ``meanwhile`` runs once while the model is asked, before its answer is
        awaited: storing the customer's message then costs the customer no
        time. Should it fail, the model call is abandoned and its error goes on.
        A model failure here (after a bounded retry) is ModelUnavailable: the
        view answers it as an HTTP error, since nothing has been streamed yet.
        """
        self.trace.start()
        attempts = 1 + self.retries
        for attempt in range(1, attempts + 1):
            self._chat_span = self.trace.start_chat(self.messages)
            self._stream = open_model_stream(self.model, self.messages, self.tools)
            if meanwhile is not None:
                self._meanwhile(meanwhile)
                meanwhile = None
            try:
                self._primed = self._read_until_first_token(self._stream)
                return
            except openai.OpenAIError as error:
                self._close_stream()
                self.trace.end_chat(self._chat_span, status="internal_error")
                if attempt < attempts and _retryable(error):
                    log.warning("model failed before the first token; retrying")
                    continue
                self._fail_before_stream(error)
                # The event's id, as in every reported error; none when
                # Sentry is off.
                reported = {"event_id": self.event_id} if self.event_id else None
                raise ModelUnavailable(extra=reported) from error

    def _meanwhile(self, work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException:
            self._close_stream()
            self.trace.end_chat(self._chat_span, status="cancelled")
            self.trace.finish("cancelled")
            raise

    def _read_until_first_token(self, stream: ModelStream) -> list[Any]:
        buffered = []
        limit = current_app.config["PRINTZ_CHAT_TIMEOUT_S"]
        for chunk in stream.chunks(idle=limit):
            if chunk is None:
                raise ModelSilent(f"no token within {limit} s")
            buffered.append(chunk)
            if _has_token(chunk):
                self.trace.first_token(self._chat_span)
                break
        return buffered

    def _fail_before_stream(self, error: BaseException) -> None:
        self.event_id = self._report(error, "before_first_token")
        self.trace.finish("internal_error")

    def _report(self, error: BaseException, stage: str) -> str | None:
        """One Sentry event for a failed turn, tagged with conversation and model.

        Logged as a warning: an ERROR record would make a second event.
        """
        event_id = ai.capture_ai_error(
            error,
            conversation_id=self.conversation["_id"],
            model=self.model,
            stage=stage,
        )
        log.warning("chat turn failed at %s (event %s)", stage, event_id)
        return event_id

    # -- the stream -----------------------------------------------------------

    def body(self) -> Iterator[bytes]:
        """The response body; every way out saves the message and ends the trace.

        ``ai.ai_stream`` ends the trace ``ok`` when this is exhausted and
        ``cancelled`` when the server closes it early; a failure turned into an
        ``error`` chunk ends it ``internal_error`` here.
        """
        ai.add_ai_breadcrumb("AI stream started", model=self.model)
        try:
            yield self.ui.start(self._metadata())
            reason = yield from self._run_steps()
            yield self.ui.finish(reason, self._metadata(usage=True))
            yield DONE
            self._save("complete", finish=reason)
            ai.add_ai_breadcrumb("AI stream completed", finish_reason=reason)
        except GeneratorExit:
            self._close_stream()
            log.info("customer stopped the answer after %d chars", len(self.ui.text))
            self._save("stopped", finish="stopped")
            raise
        except Exception as error:
            self._close_stream()
            self._report(error, "streaming")
            self._save("error", finish="error")
            self.trace.record_usage(self.usage.for_store())
            self.trace.finish("internal_error")
            yield self.ui.error(CUSTOMER_ERROR)
            yield self.ui.finish("error", self._metadata(usage=True))
            yield DONE
        finally:
            self._close_stream()
            if not self.trace.finished:
                self.trace.record_usage(self.usage.for_store())

    def _run_steps(self) -> Iterator[bytes]:
        reason = "stop"
        for step in range(self.max_steps):
            yield self.ui.start_step()
            if step > 0:
                self._chat_span = self.trace.start_chat(self.messages)
                self._stream = open_model_stream(self.model, self.messages, self.tools)
            result = yield from self._relay_model_call()
            reason = finish_reason(result.finish)
            if result.finish != "tool_calls" or not result.calls:
                yield self.ui.finish_step()
                return reason
            yield from self._run_tools(result)
            yield self.ui.finish_step()
        log.info("chat turn reached the step limit (%d)", self.max_steps)
        return "other"

    def _relay_model_call(self) -> Iterator[bytes]:
        """Relay one model call's chunks; returns what the step asked for."""
        result = StepResult()
        calls: dict[int, ToolCall] = {}
        span_status = "internal_error"
        try:
            for batch in self._batches(self._stream):
                if batch is None:
                    yield KEEPALIVE
                    continue
                yield b"".join(self._relay_batch(batch, calls, result))
            span_status = "ok"
        except GeneratorExit:
            span_status = "cancelled"
            raise
        finally:
            # On a stop this runs first, as GeneratorExit unwinds: close the
            # model's connection here so no more tokens are paid for.
            self._close_stream()
            self.trace.end_chat(
                self._chat_span,
                status=span_status,
                finish_reason=result.finish,
                response_model=self.model,
            )
        result.calls = [calls[index] for index in sorted(calls)]
        return result

    def _batches(self, stream: ModelStream) -> Iterator[list[Any] | None]:
        primed, self._primed = self._primed, []
        if primed:
            yield primed
        yield from stream.batches(idle=self.keepalive)

    def _relay_batch(
        self, batch: list[Any], calls: dict[int, ToolCall], result: StepResult
    ) -> Iterator[bytes]:
        """The wire bytes for a batch of model chunks.

        Text that arrived together goes out as one text-delta: the client
        assembles the same text from fewer events, and each event costs an
        encode and a write.
        """
        text: list[str] = []
        for chunk in batch:
            usage = chunk.get("usage")
            if usage:
                self.usage.add(usage)
                self.trace.chat_usage(self._chat_span, usage)
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content:
                    self.trace.first_token(self._chat_span)
                    result.text += content
                    text.append(content)
                if delta.get("tool_calls"):
                    if text:
                        yield self.ui.text_delta("".join(text))
                        text.clear()
                    yield from self._relay_tool_fragments(delta["tool_calls"], calls)
                if choice.get("finish_reason"):
                    result.finish = choice["finish_reason"]
        if text:
            yield self.ui.text_delta("".join(text))

    def _relay_tool_fragments(
        self, fragments: list[Any], calls: dict[int, ToolCall]
    ) -> Iterator[bytes]:
        self.trace.first_token(self._chat_span)
        for fragment in fragments:
            function = fragment.get("function") or {}
            index = fragment.get("index", 0)
            call = calls.get(index)
            if call is None:
                name = function.get("name") or "unknown"
                call_id = fragment.get("id") or f"call_{uuid.uuid4().hex[:16]}"
                call = ToolCall(call_id, name)
                calls[index] = call
                yield self.ui.tool_input_start(call.call_id, call.name)
            arguments = function.get("arguments")
            if arguments:
                call.arguments += arguments
                yield self.ui.tool_input_delta(call.call_id, arguments)

    def _run_tools(self, result: StepResult) -> Iterator[bytes]:
        """Run the step's tool calls and give the model their results."""
        self.messages.append(
            {
                "role": "assistant",
                "content": result.text or None,
                "tool_calls": [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in result.calls
                ],
            }
        )
        for call in result.calls:
            yield KEEPALIVE
            answer = yield from self._run_tool(call)
            self.messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.call_id,
                    "content": json.dumps(answer, separators=(",", ":"), default=str),
                }
            )

    def _run_tool(self, call: ToolCall) -> Iterator[bytes]:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            yield self.ui.tool_input_error(
                call.call_id, call.name, call.arguments, "The arguments are not JSON."
            )
            self.trace.tool_outcome(call.name, call.call_id, status="invalid_argument")
            return {"error": "The arguments are not valid JSON."}

        yield self.ui.tool_input_available(call.call_id, call.name, arguments)
        started = time.monotonic()
        with self.trace.tool_span(call.name, call.call_id, arguments) as span:
            try:
                output = run_tool(call.name, arguments, self.user)
            except ToolFailed as failure:
                span.fail("failed_precondition", str(failure))
                yield self.ui.tool_error(call.call_id, str(failure))
                return {"error": str(failure)}
            except Exception as error:
                span.fail("internal_error", type(error).__name__)
                self._report(error, f"tool:{call.name}")
                message = "The tool failed; the shop has been told."
                yield self.ui.tool_error(call.call_id, message)
                return {"error": message}
            span.succeed(output)
        log.info(
            "tool %s answered in %.0f ms", call.name, (time.monotonic() - started) * 1e3
        )
        yield self.ui.tool_output(call.call_id, output)
        return output

    # -- endings --------------------------------------------------------------

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _metadata(self, usage: bool = False) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "conversationId": self.conversation["_id"],
            "model": self.model,
        }
        if usage:
            metadata["usage"] = self.usage.for_client()
        return metadata

    def _save(self, status: str, finish: str) -> None:
        """Store the assistant message once, however the turn ended."""
        if self._saved:
            return
        self._saved = True
        if not self.usage.reported:
            self._estimate_usage()
        cost = ai.token_cost(self.model, self.usage.for_store()) or 0.0
        try:
            store.add_message(
                self.conversation,
                "assistant",
                self.ui.stored_parts(),
                status=status,
                message_id=self.ui.message_id,
                finish_reason=finish,
                model=self.model,
                usage=self.usage.for_store(),
                cost_usd=cost,
            )
            store.record_usage(self.user.id, self.usage.total_tokens, cost)
        except Exception:
            # Saving must not turn a stop into a crash; the outage is reported.
            log.exception("could not save the assistant message")

    def _estimate_usage(self) -> None:
        """Tokens known so far when the model never reported usage (a stop)."""
        prompt_chars = sum(len(str(m.get("content") or "")) for m in self.messages)
        self.usage.input_tokens = prompt_chars // 4
        self.usage.output_tokens = len(self.ui.text) // 4


def _has_token(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls"):
            return True
    return False


def _retryable(error: BaseException) -> bool:
    return isinstance(
        error,
        openai.APIConnectionError
        | openai.RateLimitError
        | openai.InternalServerError
        | ModelSilent,
    )
