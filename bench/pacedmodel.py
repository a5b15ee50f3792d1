"""A model server that keeps its pace at hundreds of streams, for the capacity run.

``printz.devmodel`` serves each stream on a thread that polls its socket
between chunks, behind a listen backlog of 5. That is right for the tests and
for the relay benchmark (one stream at a time), but on a 2-core machine it is
itself late from about 200 streams and resets connections at 500, so it
cannot be the yardstick Printz is held to there.

This server sends the very chunks the demo assistant of ``printz.devmodel``
sends (its ``demo_turn`` and ``compose_reply`` make them), but from one
asyncio loop: each stream's events are encoded once when the request
arrives, and a single ticker writes whatever each open stream is due. The
first event goes out at once and each next one an interval later, as in
``printz.devmodel``.

    python -m bench.pacedmodel --port 8002 --chunks-per-second 50 --text-chunks 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from dataclasses import dataclass, field

from printz.devmodel import CHAT_PATHS, compose_reply, demo_turn

log = logging.getLogger(__name__)

BACKLOG = 4096
# How often the ticker runs: a chunk leaves at most this late.
TICK_S = 0.005
MAX_BODY = 1024 * 1024


@dataclass
class _Stream:
    writer: asyncio.StreamWriter
    frames: list[bytes]
    started: float
    interval: float
    sent: int = 0
    finished: asyncio.Future = field(default_factory=asyncio.Future)

    def write_due(self, now: float) -> None:
        """Write every frame whose time has come; finish after the last."""
        if self.writer.is_closing():
            self._finish()
            return
        due = min(len(self.frames), 1 + int((now - self.started) / self.interval))
        if due > self.sent:
            self.writer.write(b"".join(self.frames[self.sent : due]))
            self.sent = due
        if self.sent == len(self.frames):
            self._finish()

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


class PacedModel:
    """Answers streamed chat completions with the demo greeting, on schedule."""

    def __init__(self, chunks_per_second: float, text_chunks: int) -> None:
        self.interval = 1.0 / chunks_per_second
        self.text_chunks = text_chunks
        self._streams: list[_Stream] = []
        self.served = 0

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(
            self._handle, host, port, backlog=BACKLOG, limit=MAX_BODY
        )
        ticker = asyncio.create_task(self._tick(stop))
        log.info("paced model on http://%s:%s/v1", host, port)
        async with server:
            await stop.wait()
        ticker.cancel()

    async def _tick(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            for stream in self._streams:
                stream.write_due(now)
            self._streams = [s for s in self._streams if not s.finished.done()]
            await asyncio.sleep(TICK_S)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while await self._answer_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _answer_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection should end."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path = request_line.split(" ")[:2]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        raw = await reader.readexactly(length) if length else b""

        path = path.split("?", 1)[0]
        if method != "POST" or path not in CHAT_PATHS:
            _send_json(writer, 404, {"error": {"message": f"no route {path}"}})
            return True
        body = json.loads(raw or b"{}")
        if not body.get("stream"):
            _send_json(writer, 400, {"error": {"message": "only streams here"}})
            return True

        stream = self._open_stream(writer, body)
        await stream.finished
        await writer.drain()
        return not writer.is_closing()

    def _open_stream(self, writer: asyncio.StreamWriter, body: dict) -> _Stream:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        turn = demo_turn(body, self.text_chunks)
        chunks = compose_reply(turn, body).stream_chunks(include_usage)
        frames = [_frame(f"data: {json.dumps(chunk)}\n\n") for chunk in chunks]
        frames[-1] += _frame("data: [DONE]\n\n") + b"0\r\n\r\n"
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        stream = _Stream(writer, frames, time.monotonic(), self.interval)
        stream.write_due(stream.started)
        self._streams.append(stream)
        self.served += 1
        return stream


def _frame(text: str) -> bytes:
    payload = text.encode()
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _send_json(writer: asyncio.StreamWriter, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacedmodel")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks-per-second", type=float, default=50.0)
    parser.add_argument("--text-chunks", type=int, default=100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        model = PacedModel(args.chunks_per_second, args.text_chunks)
        await model.serve(args.host, args.port, stop)
        log.info("paced model stopped after %d streams", model.served)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
