"""The model server: the official ``openai`` client, streamed on a reader thread.

Reading the model's stream on a helper thread lets the response send
keep-alive comments while the model is silent (a slow first token, a long tool
step), and so notice promptly when the customer has gone: the WSGI server only
learns of a closed connection when it next writes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
from flask import Flask, current_app

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


# How long the relay gathers model chunks into one write (see batches).
RELAY_WINDOW_S = 0.03

_END = object()


@dataclass
class _Failure:
    error: BaseException


class ModelStream:
    """One streamed completion, asked for and read on a daemon thread.

    The request itself is made on the thread too, so the caller can do its
    own work (store the customer's message) while the model thinks.
    """

    def __init__(self, open_stream: Callable[[], openai.Stream]) -> None:
        self._open_stream = open_stream
        self._stream: openai.Stream | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._pump, name="printz-model-stream", daemon=True
        )
        self._thread.start()

    def _pump(self) -> None:
        try:
            stream = self._open_stream()
            with self._lock:
                closed = self._closed
                self._stream = stream
            if closed:  # the reader gave up while the request was on its way
                stream.close()
                return
            for chunk in stream:
                self._queue.put(chunk)
        except BaseException as error:  # handed to the reader, never lost
            if not self._closed:
                self._queue.put(_Failure(error))
        finally:
            self._queue.put(_END)

    def chunks(self, idle: float) -> Iterator[Any]:
        """Model chunks one by one; ``None`` after ``idle`` seconds of silence.

        Takes nothing from the queue it has not yielded, so a reader may stop
        at any chunk (the first token) and go on with ``batches`` losing none.
        """
        while True:
            try:
                item = self._queue.get(timeout=idle)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def batches(self, idle: float) -> Iterator[list[Any] | None]:
        """Chunks grouped: what arrives within ``RELAY_WINDOW_S`` comes as one list.

        A model sends a few characters at a time, tens of times a second; each
        relayed write costs a wake-up, an encode and a send, so the chunks of
        one short window go out together (the customer sees the same text, at
        most a window later). A worker that fell behind relays all that waits.
        ``None`` comes after ``idle`` seconds of silence.
        """
        while True:
            try:
                item = self._queue.get(timeout=idle)
            except queue.Empty:
                yield None
                continue
            batch: list[Any] = []
            waited = False
            while item is not _END and not isinstance(item, _Failure):
                batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    if waited:
                        break
                    # Sleep rather than wait on the queue: a waiting reader
                    # would be woken by every chunk the window is meant to
                    # gather.
                    time.sleep(RELAY_WINDOW_S)
                    waited = True
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
            if batch:
                yield batch
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error

    def close(self) -> None:
        """Stop reading: the connection to the model server is closed at once.

        A request still waiting for the answer to start is closed when it does
        (the client offers no way to abort it from another thread).
        """
        with self._lock:
            self._closed = True
            stream = self._stream
        if stream is None:  # not open yet: the thread closes it when it is
            return
        try:
            stream.close()
        except Exception:  # closing a broken stream must not hide the reason
            log.debug("closing the model stream failed", exc_info=True)


def open_model_stream(
    model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> ModelStream:
    """Start one streamed completion, usage included; retries are the caller's.

    Returns at once; a failure to connect comes out of the stream's reading.
    The chunks come as the JSON the model sent (dicts): the client's typed
    chunk objects cost more CPU to build than everything else Printz does with
    a chunk, and the relay reads only a few of their fields.
    """
    client = model_client()
    body = {
        "model": model,
        "messages": messages,
        "tools": tools,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return ModelStream(
        lambda: client.post(
            "/chat/completions",
            body=body,
            cast_to=object,
            stream=True,
            stream_cls=openai.Stream[object],
        )
    )
