"""A real Sentry ingest endpoint for tests.

The SDK under test sends to `SentrySink.dsn` over HTTP exactly as it would to
sentry.io; the sink decodes what arrives so tests can assert on events,
transactions and logs, and search everything sent for secrets.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MODES = ("ok", "error_500", "hang")
HANG_SECONDS = 30.0

_INGEST_PATH = re.compile(r"^/api/(?P<project>[^/]+)/(?P<endpoint>envelope|store)/?$")


class BodyDecodeError(ValueError):
    """A request body the sink cannot decompress."""


@dataclass
class Item:
    """One envelope item: its header, raw payload and the payload as JSON."""

    headers: dict[str, Any]
    payload: bytes
    json: Any | None = None

    @property
    def type(self) -> str | None:
        return self.headers.get("type")


@dataclass
class Envelope:
    """One request's envelope, plus its decoded body and how it arrived."""

    headers: dict[str, Any]
    items: list[Item] = field(default_factory=list)
    raw: bytes = b""
    path: str = ""
    content_encoding: str | None = None


class SentrySink:
    """Sentry ingest on a free port of 127.0.0.1, keeping what it receives.

    Every request is recorded, whatever the mode: a test of an outage can still
    check what the application tried to send.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._envelopes: list[Envelope] = []
        self._mode = "ok"
        self._stopping = threading.Event()
        self._server: _SinkServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> SentrySink:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _SinkServer(("127.0.0.1", 0), _IngestHandler, sink=self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="sentry-sink",
            daemon=True,
        )
        self._thread.start()
        logger.debug("sentry sink listening at %s", self.dsn)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        # Wakes hanging handlers first, or shutdown would wait for them.
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SentrySink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sentry sink is not running; call start()")
        return self._server.server_address[1]

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    # -- outage simulation ---------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown sink mode {value!r}; use one of {MODES}")
        self._mode = value

    # -- what arrived --------------------------------------------------------

    @property
    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._envelopes)

    def items(self, type: str | None = None) -> list[Item]:
        """All items received, or those of one item type."""
        return [
            item
            for envelope in self.envelopes
            for item in envelope.items
            if type is None or item.type == type
        ]

    def events(self) -> list[dict[str, Any]]:
        """The error and message events, as decoded JSON."""
        return [item.json for item in self.items("event")]

    def transactions(self) -> list[dict[str, Any]]:
        """The transaction events, as decoded JSON."""
        return [item.json for item in self.items("transaction")]

    def logs(self) -> list[dict[str, Any]]:
        """The log records, flattened out of their batches."""
        return [
            record
            for item in self.items("log")
            for record in (item.json or {}).get("items", [])
        ]

    def raw_text(self) -> str:
        """Every decoded body received, as one string to search."""
        return "\n".join(
            envelope.raw.decode("utf-8", errors="replace")
            for envelope in self.envelopes
        )

    def clear(self) -> None:
        with self._lock:
            self._envelopes.clear()

    def wait_for(
        self, predicate: Callable[[SentrySink], Any], timeout: float = 5.0
    ) -> Any:
        """Poll until `predicate(self)` is truthy and return its value.

        Raises AssertionError describing what did arrive when time runs out.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"sentry sink: condition not met within {timeout}s; "
                    f"{self.summary()}"
                )
            time.sleep(0.05)

    def summary(self) -> str:
        """A short account of what has arrived, for failure messages."""
        envelopes = self.envelopes
        counts = Counter(item.type for env in envelopes for item in env.items)
        by_type = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        messages = [_event_title(event) for event in self.events()]
        return (
            f"mode={self.mode}, {len(envelopes)} envelope(s)"
            f" [{by_type or 'no items'}], events: {messages}"
        )

    # -- called by the handler -----------------------------------------------

    def _record(self, envelope: Envelope) -> None:
        with self._lock:
            self._envelopes.append(envelope)

    def _hang(self) -> None:
        self._stopping.wait(HANG_SECONDS)


def parse_envelope(body: bytes) -> Envelope:
    """Split a Sentry envelope into its headers and items.

    An item's payload is `length` bytes when the header gives a length, and runs
    to the end of the line otherwise.
    """
    header_line, _, rest = body.partition(b"\n")
    envelope = Envelope(headers=_json_or_none(header_line) or {}, raw=body)

    position = 0
    while position < len(rest):
        line_end = _line_end(rest, position)
        item_header = rest[position:line_end].strip()
        position = line_end + 1
        if not item_header:
            continue

        headers = json.loads(item_header)
        if not isinstance(headers, dict):
            raise ValueError(f"item header is not an object: {item_header!r}")
        length = headers.get("length")
        if length is None:
            payload_end = _line_end(rest, position)
            payload = rest[position:payload_end]
            position = payload_end + 1
        else:
            length = int(length)
            payload = rest[position : position + length]
            # The newline after a sized payload is optional.
            position += length
            if rest[position : position + 1] == b"\n":
                position += 1

        envelope.items.append(Item(headers, payload, _json_or_none(payload)))
    return envelope


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """Undo the Content-Encoding the SDK applied."""
    encoding = (content_encoding or "identity").strip().lower()
    try:
        if encoding == "identity":
            return body
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "br":
            return _brotli_decompress(body)
    except (OSError, EOFError, zlib.error) as exc:
        raise BodyDecodeError(f"corrupt {encoding} body: {exc}") from exc
    raise BodyDecodeError(f"unsupported Content-Encoding {encoding!r}")


def _brotli_decompress(body: bytes) -> bytes:
    try:
        # Optional: the SDK sends brotli only when this module is installed.
        import brotli
    except ImportError as exc:
        raise BodyDecodeError("br body, but brotli is not installed") from exc
    try:
        return brotli.decompress(body)
    except brotli.error as exc:
        raise BodyDecodeError(f"corrupt br body: {exc}") from exc


def _line_end(data: bytes, start: int) -> int:
    end = data.find(b"\n", start)
    return len(data) if end == -1 else end


def _json_or_none(data: bytes) -> Any | None:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _event_title(event: dict[str, Any] | None) -> str:
    if not event:
        return "?"
    exceptions = event.get("exception", {}).get("values") or []
    if exceptions:
        # The SDK lists chained exceptions oldest first; the last one was raised.
        return f"{exceptions[-1].get('type')}: {exceptions[-1].get('value')}"
    message = event.get("logentry", {}).get("message") or event.get("message")
    return str(message)


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler_class, sink: SentrySink) -> None:
        self.sink = sink
        super().__init__(address, handler_class)


class _IngestHandler(BaseHTTPRequestHandler):
    server: _SinkServer

    def do_POST(self) -> None:
        match = _INGEST_PATH.match(urlsplit(self.path).path)
        if match is None:
            self._reply(404, {"detail": "not an ingest endpoint"})
            return

        encoding = self.headers.get("Content-Encoding")
        sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = decode_body(sent, encoding)
        except BodyDecodeError as exc:
            self._reply(400, {"detail": str(exc)})
            return

        envelope, problem = _read_envelope(match["endpoint"], body)
        envelope.path = self.path
        envelope.content_encoding = encoding
        self.server.sink._record(envelope)

        if problem is not None:
            self._reply(400, {"detail": f"malformed envelope: {problem}"})
        else:
            self._answer_per_mode(envelope)

    def _answer_per_mode(self, envelope: Envelope) -> None:
        sink = self.server.sink
        if sink.mode == "error_500":
            self._reply(500, {"detail": "simulated ingest outage"})
            return
        if sink.mode == "hang":
            sink._hang()
        event_id = envelope.headers.get("event_id") or uuid.uuid4().hex
        self._reply(200, {"id": event_id})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The SDK gave up waiting (hang mode); nobody is left to answer.
            pass

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sentry sink: " + format, *args)


def _read_envelope(endpoint: str, body: bytes) -> tuple[Envelope, str | None]:
    """Parse a request body; a malformed one is kept too, it may hold a secret."""
    try:
        if endpoint == "store":
            return _store_request_as_envelope(body), None
        return parse_envelope(body), None
    except (ValueError, TypeError) as exc:
        return Envelope(headers={}, raw=body), str(exc)


def _store_request_as_envelope(body: bytes) -> Envelope:
    """Wrap a legacy /store/ event so it reads like an envelope's event item."""
    event = _json_or_none(body)
    headers = {"event_id": event.get("event_id")} if isinstance(event, dict) else {}
    item = Item({"type": "event", "length": len(body)}, body, event)
    return Envelope(headers=headers, items=[item], raw=body)
