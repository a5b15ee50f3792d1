"""The model server: the official ``openai`` client, streamed on a reader thread.

Reading the model's stream on a helper thread lets the response send
keep-alive comments while the model is silent (a slow first token, a long tool
step), and so notice promptly when the customer has gone: the WSGI server only
learns of a closed connection when it next writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from flask import Flask, current_app

from printz import unicode
from printz.errors import APIError, ServiceUnavailable

log = logging.getLogger(__name__)

EXTENSION_KEY = "printz.chat.model_client"


class ChatUnavailable(ServiceUnavailable):
    code = "chat_unavailable"
    message = "The shopping assistant is not configured on this server."


class ModelUnavailable(APIError):
    """The model server failed before the first token; reported to Sentry."""

    status, code = 502, "model_unavailable"
    message = "The shopping assistant could not reach its model; try again soon."


class ModelSilent(openai.OpenAIError):
    """The model sent nothing for longer than the chat timeout."""


def init_app(app: Flask) -> None:
    """Make the model client when a model server is configured."""
    if not (app.config.get("OPENAI_BASE_URL") or app.config.get("OPENAI_API_KEY")):
        log.warning("chat is off: set OPENAI_BASE_URL and/or OPENAI_API_KEY")
        app.extensions[EXTENSION_KEY] = None
        return
    app.extensions[EXTENSION_KEY] = openai.OpenAI(
        base_url=app.config.get("OPENAI_BASE_URL") or None,
        # A local OpenAI-compatible server may need no key; the client does.
        api_key=app.config.get("OPENAI_API_KEY") or "unused",
        timeout=openai.Timeout(
            app.config["PRINTZ_CHAT_TIMEOUT_S"],
            connect=app.config["PRINTZ_CHAT_CONNECT_TIMEOUT_S"],
        ),
        # Retries are done here, before the first token only.
        max_retries=0,
    )
    log.info("chat model server: %s", app.config.get("OPENAI_BASE_URL") or "OpenAI")


def model_client() -> openai.OpenAI:
    client = current_app.extensions.get(EXTENSION_KEY)
    if client is None:
        raise ChatUnavailable()
    return client


def allowed_models() -> tuple[str, ...]:
    default = current_app.config["PRINTZ_CHAT_MODEL"]
    extra = tuple(current_app.config.get("PRINTZ_CHAT_MODELS") or ())
    return (default, *[m for m in extra if m != default])


# A read that took longer than this waited for the model (the socket was empty).
BLOCKED_READ_S = 0.002

_END = object()


def _carries_output(chunk: Any) -> bool:
    """Whether a chunk holds text or a tool call, not only a role or usage."""
    try:
        delta = chunk["choices"][0]["delta"]
        return bool(delta.get("content") or delta.get("tool_calls"))
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


@dataclass
class _Failure:
    error: BaseException


class SSEDecoder:
    """Server-Sent Events in, the JSON of each ``data:`` field out.

    An OpenAI-compatible server sends one ``data: {json}`` event per chunk and
    ``data: [DONE]`` at the end. This reads exactly that, line by line as the
    SSE format has it (``\n``, ``\r\n`` or ``\r`` endings; comments, ``event:``
    and ``id:`` fields ignored; multi-line data joined), from whatever pieces
    the socket hands over.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self.done = False

    def feed(self, piece: bytes) -> list[Any]:
        """The chunks completed by ``piece``; raises on an in-stream error."""
        buffer = self._buffer + piece
        # A CR at the very end may be the first half of a CRLF: kept for later.
        held = b"\r" if buffer.endswith(b"\r") else b""
        if b"\r" in buffer:
            buffer = buffer[: len(buffer) - len(held)]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buffer.split(b"\n")
        self._buffer = rest + held
        chunks = []
        for line in lines:
            if line.startswith(b"data:"):
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line and self._data:
                data, self._data = b"\n".join(self._data), []
                if data == b"[DONE]":
                    self.done = True
                    break
                chunks.append(_chunk(data))
        return chunks


class InStreamError(ValueError):
    """The model reported an error inside its stream, or sent no JSON."""

    def __init__(self, message: str, body: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.body = body


def _chunk(data: bytes) -> Any:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise InStreamError("The model sent a chunk that is not JSON.") from None
    if unicode.may_hold_lone_surrogate(data):
        # A model may cut an escaped emoji in two; the halves become U+FFFD
        # rather than text no reply or database write could encode.
        chunk = unicode.mend(chunk)
    if isinstance(chunk, dict) and chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else None
        if not isinstance(message, str) or not message:
            message = "The model failed while streaming."
        raise InStreamError(message, body=error)
    return chunk


class ModelStream:
    """One streamed completion, asked for and read on a daemon thread.

    The request itself is made on the thread too, so the caller can do its
    own work (store the customer's message) while the model thinks. Once
    the answer has begun, a chunk that the thread had to wait for is held
    ``window`` seconds: a model sends a few characters at a time, tens of
    times a second, and every wake-up, hand-over and relayed write costs the
    same whether it carries one chunk or five. What the model sends meanwhile
    is read without waiting, and the reader, woken only when the thread waits
    again, takes it all as one batch. The first text or tool call of an
    answer is handed over as soon as it comes.
    """

    def __init__(self, open_response: Callable[[], Any], window: float) -> None:
        self._open_response = open_response
        self._window = window
        self._response: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[Any] = []
        self._end: Any = None  # _END or a _Failure, once the reader has seen it
        self._thread = threading.Thread(
            target=self._pump, name="printz-model-stream", daemon=True
        )
        self._thread.start()

    def _pump(self) -> None:
        try:
            with self._open_response() as response:
                with self._lock:
                    closed = self._closed
                    self._response = response
                if closed:  # the reader gave up while the request was on its way
                    return
                self._read(response)
        except BaseException as error:  # handed to the reader, never lost
            if not self._closed:
                self._queue.put(_Failure(error))
        finally:
            self._queue.put(_END)

    def _read(self, response: Any) -> None:
        decoder = SSEDecoder()
        pieces = iter(response.iter_bytes())
        try:
            answering = False
            while True:
                started = time.monotonic()
                piece = next(pieces, None)
                if piece is None:
                    return
                chunks = decoder.feed(piece)
                waited = time.monotonic() - started > BLOCKED_READ_S
                if chunks and answering and waited and not self._closed:
                    # Held back: what the model sends meanwhile gathers in the
                    # socket, is read without waiting next, and goes out with
                    # these in one batch.
                    time.sleep(self._window)
                if chunks:
                    self._queue.put(chunks)
                    answering = answering or any(map(_carries_output, chunks))
                if decoder.done or self._closed:
                    return
        except InStreamError as error:
            raise openai.APIError(
                error.message, response.request, body=error.body
            ) from error
        except httpx2.TimeoutException as error:
            raise openai.APITimeoutError(request=response.request) from error
        except httpx2.RequestError as error:
            raise openai.APIConnectionError(request=response.request) from error

    def _take(self, idle: float) -> list[Any] | None:
        """What waits, or the next read within ``idle`` s; None on silence."""
        if self._pending:
            taken, self._pending = self._pending, []
            return taken
        if self._end is None:
            try:
                item = self._queue.get(timeout=idle)
            except queue.Empty:
                return None
            taken = []
            while True:
                if item is _END or isinstance(item, _Failure):
                    # The first end seen is kept: a failure is followed by
                    # _END. Chunks before it go out first, the end next time.
                    self._end = item
                    break
                taken.extend(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if taken:
                return taken
        if isinstance(self._end, _Failure):
            raise self._end.error
        raise _Ended

    def chunks(self, idle: float) -> Iterator[Any]:
        """Model chunks one by one; ``None`` after ``idle`` seconds of silence.

        Keeps what it has not yielded, so a reader may stop at any chunk (the
        first token) and go on with ``batches`` losing none.
        """
        while True:
            try:
                taken = self._take(idle)
            except _Ended:
                return
            if taken is None:
                yield None
                continue
            while taken:
                chunk = taken.pop(0)
                self._pending = taken
                yield chunk
            self._pending = []

    def batches(self, idle: float) -> Iterator[list[Any] | None]:
        """All chunks that have come since the last batch, as one list.

        A worker that fell behind relays everything that waits at once.
        ``None`` comes after ``idle`` seconds of silence.
        """
        while True:
            try:
                taken = self._take(idle)
            except _Ended:
                return
            yield taken

    def close(self) -> None:
        """Stop reading: the connection to the model server is closed at once.

        A request still waiting for the answer to start is closed when it does
        (the client offers no way to abort it from another thread).
        """
        with self._lock:
            self._closed = True
            response = self._response
        if response is None:  # not open yet: the thread closes it when it is
            return
        try:
            response.close()
        except Exception:  # closing a broken stream must not hide the reason
            log.debug("closing the model stream failed", exc_info=True)


class _Ended(Exception):
    """The model's stream ended: no more chunks."""


def open_model_stream(
    model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> ModelStream:
    """Start one streamed completion, usage included; retries are the caller's.

    Returns at once; a failure to connect comes out of the stream's reading.
    The client makes the request (base URL, key, timeouts, HTTP errors as
    openai exceptions) and hands over the raw body: the chunks are decoded
    here as plain JSON (dicts), since the client's typed request and chunk
    objects cost more CPU than everything else Printz does with a chunk.
    """
    client = model_client()
    body = {
        "model": model,
        "messages": messages,
        "tools": tools,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    window = current_app.config["PRINTZ_CHAT_RELAY_WINDOW_MS"] / 1000
    # The client's documented way to a raw response: the body unread, HTTP
    # errors already raised as openai exceptions.
    return ModelStream(
        lambda: contextlib.closing(
            client.post(
                "/chat/completions", body=body, cast_to=httpx2.Response, stream=True
            )
        ),
        window,
    )
