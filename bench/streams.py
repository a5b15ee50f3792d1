"""The stream client: chat answers read as a browser would, hundreds at a time.

Run as its own process (``python -m bench.streams``), given a job as JSON on
stdin; it answers one line of JSON with a record per stream. It speaks to
Printz (``POST /api/chat``, the AI SDK UI message stream) or, for the
reference figures, to the model server directly (``POST /v1/chat/completions``
with ``stream: true``), and measures both the same way:

- time to first token: from the request's first byte to the first event that
  carries text (a ``text-delta`` from Printz, a non-empty ``content`` delta
  from the model);
- duration: from the request's first byte to ``data: [DONE]``.

Events are matched as bytes, never parsed as JSON: at hundreds of streams the
client must stay far cheaper than the server it measures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import wire

log = logging.getLogger(__name__)

DONE = b"data: [DONE]"
# A token event from each side; the model's first delta carries only the role.
# Either side may or may not put spaces after its separators.
TOKEN_EVENTS = {
    "printz": re.compile(rb'"type":\s*"text-delta"'),
    "model": re.compile(rb'"content":\s*"[^"]'),
}
# The scripted answers of bench.chat_relay are ``word0 word1 ...``, one word
# per model chunk: counting words counts the model's chunks a client got,
# however Printz grouped them into events.
SCRIPTED_WORD = re.compile(rb"word\d+ ")


@dataclass
class StreamResult:
    index: int
    status: int | None = None
    started_at: float | None = None
    ttft_s: float | None = None
    duration_s: float | None = None
    tokens: int = 0
    words: int = 0
    events: int = 0
    bytes: int = 0
    done: bool = False
    error: str | None = None


def model_request_body(model: str, text: str) -> dict[str, Any]:
    """The body the OpenAI client sends for one streamed completion."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def chat_request_body(conversation_id: str, text: str) -> dict[str, Any]:
    """What ``useChat`` posts for a new message."""
    return {
        "id": conversation_id,
        "messages": [
            {"id": "m1", "role": "user", "parts": [{"type": "text", "text": text}]}
        ],
        "trigger": "submit-message",
    }


class _StreamReader(asyncio.Protocol):
    """Sends one request and reads its event stream into a ``StreamResult``."""

    def __init__(
        self,
        request: bytes,
        token_event: re.Pattern[bytes],
        result: StreamResult,
        finished: asyncio.Future,
        started: float,
    ) -> None:
        self._request = request
        self._token_event = token_event
        self._result = result
        self._finished = finished
        self._parser = wire.ResponseParser(self._head, self._piece, self._end)
        self._pending = b""
        # From before the connect: a connection waiting in a listen backlog
        # is waiting a customer sees.
        self._started = started
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
        except wire.ProtocolError as exc:
            self._result.error = f"ProtocolError: {exc}"
            self._transport.close()

    def eof_received(self) -> bool:
        try:
            self._parser.feed_eof()
        except wire.ProtocolError:
            self._result.error = "closed mid-response"
        return False

    def _head(self, head: wire.ResponseHead) -> None:
        self._result.status = head.status

    def _piece(self, piece: bytes) -> None:
        result = self._result
        result.bytes += len(piece)
        *events, self._pending = (self._pending + piece).split(b"\n\n")
        for event in events:
            result.events += 1
            if self._token_event.search(event):
                result.tokens += 1
                result.words += len(SCRIPTED_WORD.findall(event))
                if result.ttft_s is None:
                    result.ttft_s = time.perf_counter() - self._started
            elif event.startswith(DONE):
                result.done = True
                result.duration_s = time.perf_counter() - self._started

    def _end(self) -> None:
        self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._result.error is None:
            self._result.error = type(exc).__name__
        if self._result.duration_s is None:
            self._result.duration_s = time.perf_counter() - self._started
        if not self._finished.done():
            self._finished.set_result(None)


async def read_stream(
    host: str,
    port: int,
    request: bytes,
    token_event: re.Pattern[bytes],
    result: StreamResult,
) -> None:
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    started = result.started_at = time.perf_counter()
    transport, _ = await loop.create_connection(
        lambda: _StreamReader(request, token_event, result, finished, started),
        host,
        port,
    )
    try:
        await finished
    finally:
        transport.close()


async def run_streams(job: dict[str, Any]) -> dict[str, Any]:
    host, port = job.get("host", "127.0.0.1"), job["port"]
    count = job["count"]
    concurrency = job.get("concurrency", count)
    ramp = job.get("ramp_s", 0.0)
    timeout = job.get("timeout_s", 120.0)
    token_event = TOKEN_EVENTS[job["kind"]]
    headers = {**job.get("headers", {}), "Connection": "close"}
    gate = asyncio.Semaphore(concurrency)
    origin = time.perf_counter()

    async def one(index: int) -> StreamResult:
        result = StreamResult(index)
        # Spread the starts: hundreds of connects in the same millisecond
        # would measure the listen backlog, not the streaming.
        await asyncio.sleep(index * ramp / max(count, 1))
        body = json.loads(json.dumps(job["body"]).replace("{index}", str(index)))
        request = wire.build_request(
            "POST", job["path"], f"{host}:{port}", headers, body
        )
        async with gate:
            try:
                await asyncio.wait_for(
                    read_stream(host, port, request, token_event, result), timeout
                )
            except TimeoutError:
                result.error = "timeout"
            except (OSError, wire.ProtocolError, asyncio.IncompleteReadError) as exc:
                result.error = type(exc).__name__
        if result.started_at is not None:
            result.started_at -= origin
        return result

    cpu_before = _cpu_now()
    results = await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.perf_counter() - origin
    cpu_used = _cpu_now() - cpu_before
    return {
        "streams": [asdict(r) for r in results],
        "seconds": wall,
        "client_cpu_s": cpu_used,
        "client_cpu_share": cpu_used / wall if wall else None,
    }


def _cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raise_open_file_limit() -> None:
    # Each stream is one socket; the default soft limit (often 1024) is below
    # what a step of the capacity benchmark opens.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    _raise_open_file_limit()
    job = json.load(sys.stdin)
    outcome = asyncio.run(run_streams(job))
    sys.stdout.write(json.dumps(outcome) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
