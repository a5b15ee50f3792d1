"""A scripted OpenAI-compatible model server for tests and key-less demos.

It answers the chat-completions API over real HTTP with real Server-Sent
Events, so code under test runs the same `openai` client and stream parsing it
runs against OpenAI. What it answers comes from a `Script` of `Turn`s, one
turn per request; with an empty script it plays a small shop assistant that
calls the shop's tools, which is enough to try the chat without an API key:

    python -m printz.devmodel --host 127.0.0.1 --port 8001

Only the standard library is used, so the server starts anywhere the tests do.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import http.server
import itertools
import json
import logging
import math
import re
import select
import signal
import socket
import socketserver
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("printz-dev", "gpt-4o-mini", "gpt-4.1-mini")
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
MODEL_LIST_PATHS = frozenset({"/v1/models", "/models"})

# Idle keep-alive connections are dropped after this long, so a demo server
# that runs for days does not collect one parked thread per old connection.
IDLE_TIMEOUT = 60.0
# How often a paused writer looks for a vanished client or a stopping server;
# it bounds how late a disconnect or a stop is noticed.
POLL_INTERVAL = 0.02
# Tool arguments stream in pieces this long, cut mid-token on purpose so that
# consumers must join fragments by index rather than trust token boundaries.
ARGUMENT_FRAGMENT = 7

TURN_FIELDS = (
    "text",
    "tool_calls",
    "fail_status",
    "fail_message",
    "delay_before_first",
    "chunk_interval",
    "chunks_per_second",
    "cut_after",
    "hang",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
)

# The `type` and `code` OpenAI puts in its error bodies for these statuses.
ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "unknown_url"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclasses.dataclass
class Turn:
    """One scripted answer to one chat-completions request.

    Content is `text` (a string streamed word by word, or a list of exact
    deltas) and/or `tool_calls` (`(name, arguments)` pairs; a dict is sent as
    JSON, a string verbatim, so malformed arguments can be scripted). A turn
    with neither takes its content from the demo assistant, which lets a test
    script only the timing. `fail_status` answers an OpenAI-style error
    instead, `hang` answers nothing until the server stops. Token counts left
    as None are estimated from character counts.
    """

    text: str | list[str] | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] | None = None
    fail_status: int | None = None
    fail_message: str = "The scripted model failed on purpose."
    delay_before_first: float = 0.0
    chunk_interval: float | None = None
    chunks_per_second: float | None = None
    cut_after: int | None = None
    hang: bool = False
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        if self.tool_calls is not None:
            self.tool_calls = [_tool_call_pair(call) for call in self.tool_calls]
        if self.fail_status is not None and not 400 <= self.fail_status <= 599:
            raise ValueError(f"fail_status must be 400-599, not {self.fail_status}")
        if self.chunk_interval is not None and self.chunks_per_second is not None:
            raise ValueError("give chunk_interval or chunks_per_second, not both")
        if self.chunks_per_second is not None and self.chunks_per_second <= 0:
            raise ValueError("chunks_per_second must be positive")
        for name in ("delay_before_first", "chunk_interval", "cut_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def interval(self) -> float | None:
        """Seconds between chunks, or None when the turn does not say."""
        if self.chunks_per_second is not None:
            return 1.0 / self.chunks_per_second
        return self.chunk_interval

    @property
    def has_content(self) -> bool:
        return self.text is not None or self.tool_calls is not None

    @classmethod
    def from_dict(cls, data: Any) -> Turn:
        """Build a turn from its JSON form, as posted to `/_script`."""
        if not isinstance(data, dict):
            raise ValueError("a turn must be a JSON object")
        unknown = sorted(set(data) - set(TURN_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown turn field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(TURN_FIELDS)}"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.tool_calls is not None:
            data["tool_calls"] = [
                {"name": name, "arguments": arguments}
                for name, arguments in self.tool_calls
            ]
        return data


def _tool_call_pair(call: Any) -> tuple[str, dict[str, Any] | str]:
    """Accept `(name, arguments)` or `{"name", "arguments"}` for a tool call."""
    if isinstance(call, dict):
        name, arguments = call.get("name"), call.get("arguments", {})
    elif isinstance(call, list | tuple) and len(call) == 2:
        name, arguments = call
    else:
        raise ValueError(f"a tool call is (name, arguments), not {call!r}")
    if not isinstance(name, str) or not isinstance(arguments, dict | str):
        raise ValueError(f"a tool call needs a name and dict arguments: {call!r}")
    return name, arguments


class Script:
    """The turns still to be answered, consumed one per request, in order."""

    def __init__(self, turns: Iterable[Turn] = ()) -> None:
        self._lock = threading.Lock()
        self._turns: collections.deque[Turn] = collections.deque(turns)

    def push(self, *turns: Turn) -> None:
        self.extend(turns)

    def extend(self, turns: Iterable[Turn]) -> None:
        turns = list(turns)
        if not all(isinstance(turn, Turn) for turn in turns):
            raise TypeError("a script holds Turn objects")
        with self._lock:
            self._turns.extend(turns)

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()

    def next_turn(self) -> Turn | None:
        """Take the next turn, or None when the script is used up."""
        with self._lock:
            return self._turns.popleft() if self._turns else None

    def pending(self) -> list[Turn]:
        with self._lock:
            return list(self._turns)

    def __len__(self) -> int:
        with self._lock:
            return len(self._turns)


@dataclasses.dataclass
class RequestRecord:
    """A request as received; headers are lower-cased, `body` is parsed JSON."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float
    client_port: int
    has_authorization: bool


@dataclasses.dataclass
class StreamRecord:
    """What happened to one streamed answer, for tests to assert on."""

    request_index: int
    started_at: float
    chunks_written: int = 0
    completed: bool = False
    cut: bool = False
    client_closed: bool = False
    closed_at: float | None = None
    ended_at: float | None = None


class ModelServer:
    """The scripted model server; `start()` serves it on a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        script: Script | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        demo_chunks_per_second: float | None = None,
        demo_text_chunks: int | None = None,
    ) -> None:
        self.script = script if script is not None else Script()
        self.models = tuple(models)
        self.demo_chunks_per_second = demo_chunks_per_second
        self.demo_text_chunks = demo_text_chunks
        self._host, self._port = host, port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._requests: list[RequestRecord] = []
        self._streams: list[StreamRecord] = []

    def start(self) -> ModelServer:
        if self._httpd is not None:
            raise RuntimeError("the model server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._host, self._port = self._httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"devmodel-{self._port}",
            daemon=True,
        )
        self._thread.start()
        logger.debug("Scripted model server listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and drop every open connection, hanging ones included."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return

        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The server's root, where the `/_` control endpoints live."""
        if not self._port:
            raise RuntimeError("the model server has no port until it starts")
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """What to pass as the OpenAI client's `base_url`."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[RequestRecord]:
        with self._changed:
            return list(self._requests)

    @property
    def streams(self) -> list[StreamRecord]:
        with self._changed:
            return list(self._streams)

    def reset(self) -> None:
        """Forget the script and every record, as between two tests."""
        self.script.clear()
        with self._changed:
            self._requests.clear()
            self._streams.clear()
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Return `predicate()` once it is truthy; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition still false after {timeout}s")
            # Records notify on change; the short wait covers a change that
            # lands between the predicate and the wait.
            with self._changed:
                self._changed.wait(min(remaining, 0.05))

    def _record_request(self, handler: _Handler, path: str, body: Any) -> RequestRecord:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._changed:
            record = RequestRecord(
                index=len(self._requests),
                method=handler.command,
                path=path,
                headers=headers,
                body=body,
                received_at=time.time(),
                client_port=handler.client_address[1],
                has_authorization="authorization" in headers,
            )
            self._requests.append(record)
            self._changed.notify_all()
        return record

    def _open_stream(self, request: RequestRecord) -> StreamRecord:
        with self._changed:
            record = StreamRecord(request_index=request.index, started_at=time.time())
            self._streams.append(record)
            self._changed.notify_all()
        return record

    def _touch(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _next_turn(self, body: dict[str, Any]) -> Turn:
        """The scripted turn, with the demo's content when it brings none."""
        turn = self.script.next_turn()
        if turn is None:
            turn = Turn(chunks_per_second=self.demo_chunks_per_second)
        if turn.has_content:
            return turn
        demo = demo_turn(body, self.demo_text_chunks)
        return dataclasses.replace(turn, text=demo.text, tool_calls=demo.tool_calls)

    def _model_list(self) -> dict[str, Any]:
        return {"object": "list", "data": [_model_entry(m) for m in self.models]}


def _model_entry(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "printz"}


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: ModelServer) -> None:
        self.model = model
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up with getfqdn, which can
        # stall for seconds on a machine with slow reverse DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def drop_connections(self) -> None:
        """Shut every open connection, waking threads parked on keep-alive."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanish mid-response all the time in tests; that is not worth
        # the traceback socketserver prints to stderr.
        logger.debug("Error serving %s", client_address, exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "printz-devmodel/1"
    timeout = IDLE_TIMEOUT
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if self._read_body() is None:
            return
        model = self.server.model
        if path == "/_requests":
            self._send_json(200, [dataclasses.asdict(r) for r in model.requests])
        elif path == "/_streams":
            self._send_json(200, [dataclasses.asdict(r) for r in model.streams])
        elif path == "/_script":
            pending = [turn.to_dict() for turn in model.script.pending()]
            self._send_json(200, {"pending": pending})
        elif path.startswith("/_"):
            self._send_api_error(404, f"No control endpoint GET {path}")
        else:
            model._record_request(self, path, None)
            self._answer_model_get(path)

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        raw = self._read_body()
        if raw is None:
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            if not path.startswith("/_"):
                self.server.model._record_request(self, path, None)
            self._send_api_error(400, "The request body is not valid JSON.")
            return

        if path == "/_script":
            self._queue_turns(body)
        elif path == "/_reset":
            self.server.model.reset()
            self._send_json(200, {"reset": True})
        elif path.startswith("/_"):
            self._send_api_error(404, f"No control endpoint POST {path}")
        else:
            record = self.server.model._record_request(self, path, body)
            if path in CHAT_PATHS:
                self._answer_chat(record, body)
            else:
                self._send_api_error(404, f"Unknown request URL: POST {path}")

    def _answer_model_get(self, path: str) -> None:
        model = self.server.model
        name = path.rpartition("/")[2]
        if path in MODEL_LIST_PATHS:
            self._send_json(200, model._model_list())
        elif path.startswith(("/v1/models/", "/models/")) and name in model.models:
            self._send_json(200, _model_entry(name))
        elif path.startswith(("/v1/models/", "/models/")):
            self._send_api_error(404, f"The model '{name}' does not exist")
        else:
            self._send_api_error(404, f"Unknown request URL: GET {path}")

    def _queue_turns(self, body: Any) -> None:
        items = body if isinstance(body, list) else [body]
        try:
            turns = [Turn.from_dict(item) for item in items]
        except ValueError as exc:
            self._send_api_error(400, str(exc))
            return
        self.server.model.script.extend(turns)
        pending = len(self.server.model.script)
        self._send_json(200, {"queued": len(turns), "pending": pending})

    def _answer_chat(self, record: RequestRecord, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._send_api_error(400, "'messages' is a required list.")
            return

        model = self.server.model
        turn = model._next_turn(body)
        if turn.fail_status is None and body.get("stream"):
            stream = model._open_stream(record)
            try:
                self._answer_streaming(turn, body, stream)
            finally:
                stream.ended_at = time.time()
                model._touch()
            return

        if not self._pause(turn.delay_before_first, None):
            return
        if turn.hang:
            self._pause(math.inf, None)
            self.close_connection = True
        elif turn.fail_status is not None:
            self._send_api_error(turn.fail_status, turn.fail_message)
        elif turn.cut_after is not None:
            # Without a stream to cut, the answer is dropped whole.
            self.close_connection = True
        else:
            self._send_json(200, compose_reply(turn, body).completion())

    def _answer_streaming(
        self, turn: Turn, body: dict[str, Any], stream: StreamRecord
    ) -> None:
        # The delay comes before the status line, as with a real model whose
        # response starts only once the first token exists.
        if not self._pause(turn.delay_before_first, stream):
            return
        if turn.hang:
            self._pause(math.inf, stream)
            self.close_connection = True
            return

        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        chunks = compose_reply(turn, body).stream_chunks(include_usage)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Request-Id", f"req_{uuid.uuid4().hex}")
            # Chunked framing rather than Connection: close, so that a cut
            # stream is a broken body the client must report, not a clean end.
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
        except ConnectionError:
            self._mark_closed(stream)
            return

        # Records are updated before each write and undone if it fails: a
        # client that has read a chunk must never find the record behind it.
        limit = len(chunks) if turn.cut_after is None else turn.cut_after
        for position, chunk in enumerate(chunks[:limit]):
            if position and not self._pause(turn.interval or 0.0, stream):
                return
            stream.chunks_written += 1
            if not self._write_frame(_event(json.dumps(chunk)), stream):
                stream.chunks_written -= 1
                return
            self.server.model._touch()

        if turn.cut_after is not None:
            # Leaving the chunked body unterminated is what a dropped upstream
            # connection looks like to the client.
            stream.cut = True
            self.close_connection = True
            return
        stream.completed = True
        if not self._write_frame(_event("[DONE]") + b"0\r\n\r\n", stream):
            stream.completed = False

    def _pause(self, seconds: float, stream: StreamRecord | None) -> bool:
        """Wait, watching the client; False when it left or the server stops."""
        deadline = time.monotonic() + seconds
        while not self.server.model._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._client_gone(min(remaining, POLL_INTERVAL)):
                self._mark_closed(stream)
                return False
        self.close_connection = True
        return False

    def _client_gone(self, wait: float) -> bool:
        # The request is fully read, so a readable socket means either the
        # client hung up (end of file) or it pipelined another request.
        try:
            readable, _, _ = select.select([self.connection], [], [], wait)
            if not readable:
                return False
            peeked = self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True
        if peeked:
            # Only a failing write can tell a pipelining client from a gone
            # one now; sleeping keeps the loop from spinning on the data.
            time.sleep(wait)
            return False
        return True

    def _write_frame(self, frame: bytes, stream: StreamRecord) -> bool:
        try:
            self.wfile.write(frame)
        except ConnectionError:
            self._mark_closed(stream)
            return False
        except OSError:
            if not self.server.model._stopping.is_set():
                raise
            self.close_connection = True
            return False
        return True

    def _mark_closed(self, stream: StreamRecord | None) -> None:
        self.close_connection = True
        if stream is None or stream.client_closed:
            return
        stream.client_closed = True
        stream.closed_at = time.time()
        logger.debug(
            "Client left stream %d after %d chunks",
            stream.request_index,
            stream.chunks_written,
        )
        self.server.model._touch()

    def _read_body(self) -> bytes | None:
        """The whole request body, or None after answering a malformed one."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked_body()
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            self._send_api_error(400, "The request body framing is malformed.")
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked_body(self) -> bytes:
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        # Trailer lines end at a blank line.
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(parts)

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Request-Id", f"req_{uuid.uuid4().hex}")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except ConnectionError:
            self.close_connection = True

    def _send_api_error(self, status: int, message: str) -> None:
        kind, code = ERROR_KINDS.get(status, ("server_error", None))
        error = {"message": message, "type": kind, "param": None, "code": code}
        self._send_json(status, {"error": error})


def _event(data: str) -> bytes:
    """One Server-Sent Event wrapped in one HTTP chunk."""
    payload = f"data: {data}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(payload), payload)


@dataclasses.dataclass
class Reply:
    """The content of one answer, ready to send whole or as stream chunks."""

    id: str
    model: str
    created: int
    text_deltas: list[str]
    tool_calls: list[dict[str, str]]
    finish_reason: str
    usage: dict[str, Any]

    @property
    def text(self) -> str:
        return "".join(self.text_deltas)

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.text if self.text_deltas or not self.tool_calls else None,
            "refusal": None,
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in self.tool_calls
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self.finish_reason,
        }
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage,
        }

    def stream_chunks(self, include_usage: bool) -> list[dict[str, Any]]:
        """Every chunk of the streamed answer, in the order OpenAI sends them."""
        deltas: list[dict[str, Any]] = []
        if self.text_deltas or not self.tool_calls:
            deltas.append({"role": "assistant", "content": ""})
            deltas.extend({"content": text} for text in self.text_deltas if text)

        for index, call in enumerate(self.tool_calls):
            function = {"name": call["name"], "arguments": ""}
            opening = {"index": index, "id": call["id"], "type": "function"}
            first: dict[str, Any] = {"tool_calls": [{**opening, "function": function}]}
            if not deltas:
                # OpenAI folds the role into the first tool call when there
                # is no text: a consumer must not open an empty text part.
                first = {"role": "assistant", "content": None, **first}
            deltas.append(first)
            for fragment in _fragments(call["arguments"], ARGUMENT_FRAGMENT):
                piece = {"index": index, "function": {"arguments": fragment}}
                deltas.append({"tool_calls": [piece]})

        chunks = [self._chunk(delta, None, include_usage) for delta in deltas]
        chunks.append(self._chunk({}, self.finish_reason, include_usage))
        if include_usage:
            chunks.append({**self._envelope(), "choices": [], "usage": self.usage})
        return chunks

    def _envelope(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def _chunk(
        self, delta: dict[str, Any], finish_reason: str | None, include_usage: bool
    ) -> dict[str, Any]:
        choice = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        chunk = {**self._envelope(), "choices": [choice]}
        if include_usage:
            chunk["usage"] = None
        return chunk


def compose_reply(turn: Turn, body: dict[str, Any]) -> Reply:
    """Turn a scripted turn into the answer to this request."""
    if isinstance(turn.text, list):
        text_deltas = [str(piece) for piece in turn.text]
    else:
        text_deltas = split_words(turn.text or "")

    tool_calls = [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "name": name,
            "arguments": arguments
            if isinstance(arguments, str)
            else json.dumps(arguments),
        }
        for name, arguments in turn.tool_calls or []
    ]
    finish_reason = turn.finish_reason or ("tool_calls" if tool_calls else "stop")
    completion_text = "".join(text_deltas) + "".join(
        call["name"] + call["arguments"] for call in tool_calls
    )
    return Reply(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        model=str(body.get("model") or DEFAULT_MODELS[0]),
        created=int(time.time()),
        text_deltas=text_deltas,
        tool_calls=tool_calls,
        finish_reason=finish_reason,
        usage=_usage(turn, body, completion_text),
    )


def _usage(turn: Turn, body: dict[str, Any], completion_text: str) -> dict[str, Any]:
    prompt = turn.prompt_tokens
    if prompt is None:
        prompt = max(1, _estimate_tokens(_prompt_text(body)))
    completion = turn.completion_tokens
    if completion is None:
        completion = _estimate_tokens(completion_text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": turn.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
    }


def _estimate_tokens(text: str) -> int:
    # About four characters a token for English, the usual rule of thumb.
    return math.ceil(len(text) / 4)


def _prompt_text(body: dict[str, Any]) -> str:
    pieces = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        pieces.append(message_text(message.get("content")))
        for call in message.get("tool_calls") or []:
            function = (call.get("function") or {}) if isinstance(call, dict) else {}
            pieces.append(str(function.get("arguments") or ""))
    return "".join(pieces)


def split_words(text: str) -> list[str]:
    """Split text into word-sized deltas that join back to exactly the text."""
    return re.findall(r"^\s+|\S+\s*", text)


def _fragments(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def message_text(content: Any) -> str:
    """The text of a message's content, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", None)
        )
    return ""


# The demo assistant: just enough intent spotting to exercise the shop's tools.

FRIENDLY_TEXT = (
    "Hello! I'm the Printz demo assistant, a scripted stand-in for the real "
    "model. Ask me about business cards, flyers, posters, stickers, banners or "
    "booklets, ask for a price such as 'quote 500 flyers', or ask about an "
    "order, for example 'where is order PZ-1001?'."
)
PRODUCT_WORDS = re.compile(
    r"\b(business cards?|cards?|flyers?|posters?|stickers?|banners?|booklets?)\b",
    re.IGNORECASE,
)
PRICE_WORDS = re.compile(
    r"\b(price[sd]?|pricing|quotes?|cost[s]?|how much)\b", re.IGNORECASE
)
QUANTITY = re.compile(r"\b(\d[\d,]*)\b")
# An order id is "#" and digits, or a token mixing letters and digits, or a long
# number: "order 500 flyers" must not look up order 500.
ORDER_ID = re.compile(
    r"\border\b\s*(?:(?:no\.?|number|id|is)\s*)?:?\s*"
    r"(?:#\s*(\d+)|((?=[\w-]*[A-Za-z])(?=[\w-]*\d)[\w-]+|\d{6,})\b)",
    re.IGNORECASE,
)
# The demo's guessed argument names, and the names a tool schema may use.
ARGUMENT_ALIASES = {
    "query": {"query", "q", "search", "text", "term", "keywords"},
    "product": {"product", "product_slug", "slug", "product_type", "product_name"},
    "quantity": {"quantity", "qty", "count", "copies", "units"},
    "order_id": {"order_id", "order", "id", "order_number", "reference"},
}


def demo_turn(body: dict[str, Any], text_chunks: int | None = None) -> Turn:
    """What the demo assistant answers to this request.

    After a tool result it summarises the result. Otherwise it calls the first
    offered tool that fits the last user message: `get_order_status` for
    "order" and an id, `quote_price` for a price word and a number,
    `search_products` for a product word. A tool the request does not offer
    is never called, as a real model would not; failing all that it greets.
    """
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        name = _tool_name(messages, last.get("tool_call_id"))
        return Turn(text=summarise_tool_result(name, message_text(last["content"])))

    user_text = next(
        (message_text(m.get("content")) for m in reversed(messages) if _is_user(m)),
        "",
    )
    call = _demo_tool_call(user_text, _offered_tools(body))
    if call is not None:
        return Turn(tool_calls=[call])
    if text_chunks:
        words = itertools.cycle(split_words(FRIENDLY_TEXT + " "))
        return Turn(text=list(itertools.islice(words, text_chunks)))
    return Turn(text=FRIENDLY_TEXT)


def _is_user(message: dict[str, Any]) -> bool:
    return message.get("role") == "user"


def _demo_tool_call(
    text: str, offered: dict[str, dict[str, Any]]
) -> tuple[str, dict[str, Any]] | None:
    product = PRODUCT_WORDS.search(text)
    product_stem = product.group(1).lower().removesuffix("s") if product else None
    candidates = []

    order = ORDER_ID.search(text)
    if order:
        candidates.append(("get_order_status", {"order_id": order[1] or order[2]}))
    quantity = QUANTITY.search(text)
    if PRICE_WORDS.search(text) and quantity:
        guess = {"product": product_stem, "quantity": int(quantity[1].replace(",", ""))}
        candidates.append(("quote_price", guess))
    if product_stem:
        candidates.append(("search_products", {"query": product_stem}))

    for name, guess in candidates:
        if name in offered:
            return name, fit_arguments(guess, offered[name])
    return None


def _offered_tools(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The request's function tools, by name, with their parameter schemas."""
    offered = {}
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            offered[function["name"]] = function.get("parameters") or {}
    return offered


def fit_arguments(guess: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Rename guessed arguments to the property names a tool's schema declares.

    One level of array nesting is followed, so `{"items": [{"product",
    "quantity"}]}` is filled too. Without declared properties the guess stands.
    """
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return {key: value for key, value in guess.items() if value is not None}

    fitted: dict[str, Any] = {}
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        value = _guess_for(name, guess)
        if value is not None:
            fitted[name] = _coerce(value, spec.get("type"))
        elif spec.get("type") == "array" and isinstance(spec.get("items"), dict):
            item = fit_arguments(guess, spec["items"])
            if item and spec["items"].get("properties"):
                fitted[name] = [item]
    return fitted


def _guess_for(name: str, guess: dict[str, Any]) -> Any:
    for key, aliases in ARGUMENT_ALIASES.items():
        if name.lower() in aliases and guess.get(key) is not None:
            return guess[key]
    return None


def _coerce(value: Any, kind: Any) -> Any:
    if kind == "string":
        return str(value)
    if kind in ("integer", "number") and isinstance(value, str):
        digits = re.sub(r"\D", "", value)
        return int(digits) if digits else value
    return value


def _tool_name(messages: list[dict[str, Any]], call_id: Any) -> str | None:
    """The name of the tool whose call `call_id` answers, if it can be found."""
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("id") == call_id:
                return (call.get("function") or {}).get("name")
    return None


def summarise_tool_result(tool: str | None, content: str) -> str:
    """A short sentence about a tool's result, as a model would give."""
    try:
        value = json.loads(content)
    except ValueError:
        value = content

    if isinstance(value, dict) and value.get("error"):
        error = value["error"]
        if isinstance(error, dict):
            error = error.get("message") or error.get("code") or "an error"
        return f"Sorry, {tool or 'that lookup'} failed: {error}."
    if isinstance(value, dict):
        listed = next(
            (value[key] for key in ("items", "results", "products") if key in value),
            None,
        )
        value = listed if isinstance(listed, list) else value

    if isinstance(value, list):
        if not value:
            return "I found nothing matching that. Could you try another product?"
        labels = [label for item in value[:3] if (label := _label(item))]
        found = f"I found {len(value)} result{'s' if len(value) != 1 else ''}"
        listed_labels = f": {', '.join(labels)}" if labels else ""
        return f"{found}{listed_labels}. Would you like a quote for one of them?"
    if isinstance(value, dict):
        facts = [
            f"{key.replace('_', ' ')}: {item}"
            for key, item in value.items()
            if isinstance(item, str | int | float | bool)
        ][:4]
        return f"Here is what I found: {'; '.join(facts)}." if facts else "Done."
    text = str(value).strip()
    return f"Here is what I found: {text[:160]}{'...' if len(text) > 160 else ''}"


def _label(item: Any) -> str | None:
    if isinstance(item, dict):
        for key in ("name", "title", "slug", "id"):
            if isinstance(item.get(key), str):
                return item[key]
    return item if isinstance(item, str) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m printz.devmodel",
        description="Serve a scripted OpenAI-compatible model (any API key works).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free one")
    parser.add_argument(
        "--chunks-per-second",
        type=float,
        help="pace of the demo's streamed answers (default: as fast as possible)",
    )
    parser.add_argument(
        "--text-chunks",
        type=int,
        help="make the demo's greeting exactly this many chunks (for benchmarks)",
    )
    parser.add_argument("--script", help="a JSON file holding a list of turns")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    server = ModelServer(
        args.host,
        args.port,
        demo_chunks_per_second=args.chunks_per_second,
        demo_text_chunks=args.text_chunks,
    )
    if args.script:
        with open(args.script, encoding="utf-8") as file:
            server.script.extend(Turn.from_dict(item) for item in json.load(file))

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    server.start()
    logger.info("Scripted model server on %s (any API key works)", server.base_url)
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    logger.info("Scripted model server stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
