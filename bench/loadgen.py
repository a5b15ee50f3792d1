"""The load generator: N kept-alive connections, each sending one GET after another.

Run as its own process (``python -m bench.loadgen``) so that its CPU is its own
and the benchmark can show it was not the bottleneck. It writes ``measuring``
when the measured window opens and ``done`` when it closes, so the parent can
read the server's CPU time at the same instants, then one line of JSON.

Closed loop: each connection waits for a response before sending the next
request, so the offered load follows what the server can take and latency is
what a client saw, queueing included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from bench import wire
from bench.stats import percentile

log = logging.getLogger(__name__)

RECONNECT_PAUSE = 0.05
STOP_GRACE = 10.0


@dataclass
class Window:
    """What was measured between ``measuring`` and ``done``."""

    opened_at: float | None = None
    closed_at: float | None = None
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    def count_error(self, kind: str) -> None:
        if self.opened_at is not None and self.closed_at is None:
            self.errors[kind] += 1

    def covers(self, started: float, ended: float) -> bool:
        return (
            self.opened_at is not None
            and started >= self.opened_at
            and (self.closed_at is None or ended <= self.closed_at)
        )


class _Connection(asyncio.Protocol):
    """One kept-alive connection sending the next request when a response ends."""

    def __init__(
        self,
        request: bytes,
        window: Window,
        stop: asyncio.Event,
        closed: asyncio.Future,
    ) -> None:
        self._request = request
        self._window = window
        self._stop = stop
        self._closed = closed
        self._parser = wire.ResponseParser(self._head, self._piece, self._end)
        self._transport: asyncio.Transport | None = None
        self._started = 0.0
        self._status = 0
        self._keeps_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self._stop.is_set():
            self._transport.close()
            return
        self._started = time.perf_counter()
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
        except wire.ProtocolError:
            self._window.count_error("ProtocolError")
            self._transport.close()

    def _head(self, head: wire.ResponseHead) -> None:
        self._status = head.status
        self._keeps_alive = head.keeps_alive

    def _piece(self, piece: bytes) -> None:
        pass

    def _end(self) -> None:
        ended = time.perf_counter()
        if self._window.covers(self._started, ended):
            self._window.latencies.append(ended - self._started)
            self._window.statuses[self._status] += 1
        if self._keeps_alive:
            self._send()
        else:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._stop.is_set() and exc is not None:
            self._window.count_error(type(exc).__name__)
        if not self._closed.done():
            self._closed.set_result(None)


async def _drive_connection(
    host: str,
    port: int,
    request: bytes,
    window: Window,
    stop: asyncio.Event,
    delay: float,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(delay)
    while not stop.is_set():
        closed = loop.create_future()
        try:
            await loop.create_connection(
                lambda closed=closed: _Connection(request, window, stop, closed),
                host,
                port,
            )
        except OSError as exc:
            window.count_error(type(exc).__name__)
            await asyncio.sleep(RECONNECT_PAUSE)
            continue
        await closed
        if not stop.is_set():
            # The server closed a kept-alive connection: open another.
            await asyncio.sleep(RECONNECT_PAUSE)


def _cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run_load(
    host: str,
    port: int,
    path: str,
    cookie: str | None,
    connections: int,
    warmup: float,
    duration: float,
) -> dict:
    headers = {"Cookie": cookie} if cookie else {}
    request = wire.build_request("GET", path, f"{host}:{port}", headers)
    window = Window()
    stop = asyncio.Event()
    # Connections open one after another over the first half of the warm-up,
    # as clients arrive, not in one instant: opened together, they all go to
    # whichever one or two gevent workers the kernel wakes first, and the run
    # measures that draw instead of the server.
    stagger = warmup / 2 / max(connections, 1)
    tasks = [
        asyncio.create_task(
            _drive_connection(host, port, request, window, stop, index * stagger)
        )
        for index in range(connections)
    ]

    await asyncio.sleep(warmup)
    window.opened_at = time.perf_counter()
    cpu_before = _cpu_now()
    _say("measuring")
    await asyncio.sleep(duration)
    window.closed_at = time.perf_counter()
    cpu_used = _cpu_now() - cpu_before
    _say("done")

    stop.set()
    await asyncio.wait(tasks, timeout=STOP_GRACE)
    wall = window.closed_at - window.opened_at
    completed = len(window.latencies)
    ok = sum(n for status, n in window.statuses.items() if 200 <= status < 300)
    return {
        "path": path,
        "connections": connections,
        "seconds": wall,
        "requests": completed,
        "ok": ok,
        "statuses": {str(k): v for k, v in window.statuses.items()},
        "errors": dict(window.errors),
        "rps": completed / wall,
        "p50_ms": _ms(percentile(window.latencies, 0.50)),
        "p99_ms": _ms(percentile(window.latencies, 0.99)),
        "loadgen_cpu_s": cpu_used,
        "loadgen_cpu_share": cpu_used / wall,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--cookie")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)

    result = asyncio.run(
        run_load(
            args.host,
            args.port,
            args.path,
            args.cookie,
            args.connections,
            args.warmup,
            args.duration,
        )
    )
    _say(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
