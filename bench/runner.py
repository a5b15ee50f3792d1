"""What every benchmark does: start helpers, drive clients, write the results.

The clients run as processes of their own (``bench.loadgen``,
``bench.streams``) so that the CPU they spend is theirs, measured and
reported, and never taken from the sink's threads in this process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stack import ROOT, BenchError, PrintzServer
from printz.devstack import free_port

log = logging.getLogger(__name__)

RESULTS = ROOT / "bench" / "results"
MODEL_START_TIMEOUT = 30.0
RSS_SAMPLE_S = 0.2


def round_robin(variants: Sequence[Any], round_index: int) -> list[Any]:
    """The variants in this round's order: each round starts one further on.

    Alternating in a fixed order would give one variant the same neighbour,
    and the same warm or cold machine, every round.
    """
    shift = round_index % len(variants)
    return [*variants[shift:], *variants[:shift]]


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_open_file_limit() -> None:
    """Allow as many sockets as the hard limit: hundreds of streams each side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- model servers --------------------------------------------------------------


class ModelProcess:
    """A model server as a child process: ``printz.devmodel`` or the paced one."""

    def __init__(self, module: str, arguments: Sequence[str] = ()) -> None:
        self.module = module
        self.port = free_port()
        self.arguments = list(arguments)
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> ModelProcess:
        command = [
            sys.executable,
            "-m",
            self.module,
            "--port",
            str(self.port),
            *self.arguments,
        ]
        self._process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + MODEL_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchError(f"{self.module} exited at start")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            time.sleep(0.1)
        raise BenchError(f"{self.module} did not listen on {self.port}")

    def __exit__(self, *exc_info: object) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# -- clients --------------------------------------------------------------------


@dataclass
class Measured:
    """A client's own result plus the CPU the watched processes spent meanwhile."""

    result: dict[str, Any]
    cpu_s: dict[str, float] = field(default_factory=dict)
    pids_changed: list[str] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)
    # Seconds between the two CPU readings.
    window_s: float = 0.0


CPUProbe = Callable[[], Any]


def _cpu_snapshot(probes: dict[str, CPUProbe]) -> dict[str, Any]:
    return {name: probe() for name, probe in probes.items()}


def _cpu_delta(
    before: dict[str, Any], after: dict[str, Any], measured: Measured
) -> None:
    for name, first in before.items():
        last = after[name]
        if isinstance(first, float):
            measured.cpu_s[name] = last - first
            continue
        measured.cpu_s[name] = last.since(first)
        if last.pids != first.pids:
            # A worker that died took its CPU time with it: the figure is low.
            measured.pids_changed.append(name)


def run_loadgen(
    server: PrintzServer,
    path: str,
    cookie: str,
    connections: int,
    warmup: float,
    duration: float,
    probes: dict[str, CPUProbe],
) -> Measured:
    """One fixed-duration load on ``path``, CPU read when the window opens and ends."""
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--port",
        str(server.port),
        "--path",
        path,
        "--cookie",
        cookie,
        "--connections",
        str(connections),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    measured = Measured(result={})
    before: dict[str, Any] = {}
    try:
        for line in process.stdout:
            word = line.strip()
            if word == "measuring":
                before = _cpu_snapshot(probes)
            elif word == "done":
                _cpu_delta(before, _cpu_snapshot(probes), measured)
            elif word.startswith("{"):
                measured.result = json.loads(word)
    finally:
        process.wait(30)
    if process.returncode != 0 or not measured.result:
        raise BenchError(f"the load generator failed on {server.name} {path}")
    return measured


def run_stream_client(
    job: dict[str, Any],
    probes: dict[str, CPUProbe],
    memory: dict[str, Callable[[], int]] | None = None,
    settle_s: float = 0.0,
) -> Measured:
    """Run ``bench.streams`` on ``job``; CPU over the whole run, RSS at its peak.

    The CPU is read ``settle_s`` after the client is done, so that what a
    server does once the last byte is sent (saving the answer, sending its
    trace) is counted with the run.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.streams"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    measured = Measured(result={})
    peaks = {name: 0 for name in memory or {}}
    stop_sampling = threading.Event()

    def sample_memory() -> None:
        while not stop_sampling.wait(RSS_SAMPLE_S):
            for name, read in (memory or {}).items():
                peaks[name] = max(peaks[name], read())

    sampler = threading.Thread(target=sample_memory, name="rss-sampler", daemon=True)
    opened = time.monotonic()
    before = _cpu_snapshot(probes)
    sampler.start()
    try:
        out, _ = process.communicate(json.dumps(job))
        time.sleep(settle_s)
    finally:
        stop_sampling.set()
        sampler.join()
    _cpu_delta(before, _cpu_snapshot(probes), measured)
    measured.window_s = time.monotonic() - opened
    measured.peak_rss = peaks
    if process.returncode != 0:
        raise BenchError(f"the stream client failed on job for port {job['port']}")
    measured.result = json.loads(out.strip().splitlines()[-1])
    return measured


def idle_cpu_rate(probe: CPUProbe, seconds: float) -> float:
    """CPU seconds per second ``probe``'s processes spend with nothing to do.

    An idle gunicorn is not free: each worker's database client checks its
    servers, the Sentry SDK flushes on a timer. A figure per unit of work can
    leave that out by taking away this rate times the measured window.
    """
    first = probe()
    time.sleep(seconds)
    spent = probe().since(first)
    return spent / seconds


def settle(seconds: float) -> None:
    """Let a server finish what the last run left (saves, Sentry sends)."""
    time.sleep(seconds)


# -- results --------------------------------------------------------------------


def write_results(name: str, table: str, data: dict[str, Any]) -> Path:
    """``bench/results/<name>.md`` and ``.json``; returns the markdown path.

    A quick run writes under ``bench/results/quick/``: a smoke check must
    never replace the figures of a full run.
    """
    folder = RESULTS / "quick" if data.get("plan", {}).get("quick") else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / f"{name}.md"
    markdown.write_text(table)
    (folder / f"{name}.json").write_text(
        json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    )
    log.info("wrote %s and %s.json", markdown.relative_to(ROOT), name)
    return markdown


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{suffix}"


def fmt_spread(summary: dict[str, Any], digits: int = 1) -> str:
    """``median (±spread%)`` for a table cell."""
    median, spread = summary.get("median"), summary.get("spread")
    if median is None:
        return "-"
    if spread is None:
        return fmt(median, digits)
    return f"{median:.{digits}f} (±{spread * 50:.0f}%)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary folder for instance paths and logs, kept on failure."""
    path = Path(tempfile.mkdtemp(prefix="printz-bench-"))
    ok = False
    try:
        yield path
        ok = True
    finally:
        if ok and not os.environ.get("PRINTZ_BENCH_KEEP"):
            shutil.rmtree(path, ignore_errors=True)
        else:
            log.info("bench scratch files (logs) kept in %s", path)
