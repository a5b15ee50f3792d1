"""Just enough HTTP/1.1 for the load and stream clients, fed from asyncio protocols.

A client library, or even asyncio streams with an ``await`` per HTTP chunk,
spends tens of microseconds per response piece; at hundreds of streams that
is a good share of a 2-core machine taken from the server under test. Here a
request is bytes written on a kept-alive connection, and responses are framed
(Content-Length or chunked) by a parser fed whatever the socket delivered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_HEAD = 64 * 1024


class ProtocolError(RuntimeError):
    """The server answered something this client cannot frame."""


def build_request(
    method: str,
    path: str,
    host: str,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
) -> bytes:
    """The bytes of one request; a body is sent as JSON."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    payload = b""
    if body is not None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass
class ResponseHead:
    status: int
    headers: dict[str, str]

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None

    @property
    def keeps_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


def parse_head(raw: bytes) -> ResponseHead:
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split(" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise ProtocolError(f"bad status line {status_line!r}") from exc
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return ResponseHead(status, headers)


class ResponseParser:
    """Frames the responses arriving on one connection, one after another.

    ``on_head(head)``, ``on_piece(bytes)`` (one per HTTP chunk, or whatever
    arrived for a sized body) and ``on_end()`` are called as bytes are fed.
    A body without length or chunking ends when ``feed_eof`` is called.
    """

    def __init__(
        self,
        on_head: Callable[[ResponseHead], None],
        on_piece: Callable[[bytes], None],
        on_end: Callable[[], None],
    ) -> None:
        self._on_head, self._on_piece, self._on_end = on_head, on_piece, on_end
        self._buffer = bytearray()
        self._head: ResponseHead | None = None
        self._remaining: int | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._step():
            pass

    def feed_eof(self) -> None:
        """The server closed: that ends a body framed by the close, nothing else."""
        head = self._head
        if head is None:
            return
        if not head.chunked and head.length is None:
            self._end()
            return
        raise ProtocolError("connection closed inside a response")

    def _step(self) -> bool:
        """Consume what can be consumed; True when another step may succeed."""
        buffer = self._buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ProtocolError("response head too long")
                return False
            self._head = parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
            self._remaining = None if self._head.chunked else self._head.length
            self._on_head(self._head)
            if self._remaining == 0:
                self._end()
            return True
        if self._head.chunked:
            return self._chunk_step()
        if not buffer:
            return False
        if self._remaining is None:
            self._on_piece(bytes(buffer))
            buffer.clear()
            return False
        taken = bytes(buffer[: self._remaining])
        del buffer[: len(taken)]
        self._remaining -= len(taken)
        self._on_piece(taken)
        if self._remaining == 0:
            self._end()
            return True
        return False

    def _chunk_step(self) -> bool:
        buffer = self._buffer
        line_end = buffer.find(b"\r\n")
        if line_end < 0:
            return False
        size = int(bytes(buffer[:line_end]).split(b";", 1)[0], 16)
        if size == 0:
            # The last chunk, then trailers (none expected) and an empty line.
            if buffer.find(b"\r\n\r\n", line_end) != line_end:
                return False
            del buffer[: line_end + 4]
            self._end()
            return True
        start = line_end + 2
        if len(buffer) < start + size + 2:
            return False
        piece = bytes(buffer[start : start + size])
        del buffer[: start + size + 2]
        self._on_piece(piece)
        return True

    def _end(self) -> None:
        self._head = None
        self._remaining = None
        self._on_end()


async def open_protocol(
    host: str, port: int, factory: Callable[[], asyncio.Protocol]
) -> asyncio.Protocol:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(factory, host, port)
    return protocol
