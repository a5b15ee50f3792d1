"""Serve Printz with real gunicorn, the way production does, for a test.

``GunicornServer`` runs ``gunicorn -c gunicorn.conf.py wsgi:app`` from the
repository root (the gunicorn next to the test interpreter) in a process group
of its own, on a free port of 127.0.0.1, with only the settings it is given:
the caller's own ``PRINTZ_*``, ``SENTRY_*`` and plain-named settings are not
inherited, and the instance folder is a scratch one, so a developer's
``instance/printz.cfg`` stays out. ``start`` waits for ``/healthz``; ``stop``
sends SIGTERM, the graceful way (workers finish their requests and run their
exit hooks), and kills the group if that takes too long. Output goes to
``log_path``; ``log_text()`` reads it back for assertions and failure messages.

    with GunicornServer(settings, tmp_path, workers=2, threads=8) as server:
        requests.get(server.url + "/healthz")
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# Settings read under their plain name too (printz/config.py, plain_env=True).
_PLAIN_NAMES = (
    "SECRET_KEY",
    "MONGO_URI",
    "REDIS_URL",
    "SENTRY_DSN",
    "SENTRY_ENVIRONMENT",
    "SENTRY_RELEASE",
    "SENTRY_TRACES_SAMPLE_RATE",
    "SENTRY_SPOTLIGHT",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "HOST",
    "PORT",
)


class GunicornError(RuntimeError):
    """gunicorn did not start or stop as asked; the message has its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command() -> list[str]:
    beside = Path(sys.executable).with_name("gunicorn")
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "gunicorn"]


class GunicornServer:
    """One gunicorn master and its workers, serving ``wsgi:app``.

    ``settings`` are Printz settings by name (``MONGO_URI``, ``SENTRY_DSN``...),
    passed as ``PRINTZ_<NAME>`` environment variables.
    """

    def __init__(
        self,
        settings: Mapping[str, object],
        scratch_dir: Path,
        *,
        workers: int = 2,
        threads: int = 8,
        worker_class: str = "gthread",
        preload: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scratch_dir = Path(scratch_dir)
        self.log_path = self.scratch_dir / f"gunicorn-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self._command = [
            *gunicorn_command(),
            "-c",
            "gunicorn.conf.py",
            *extra_args,
            "wsgi:app",
        ]
        self._env = self._environment(
            settings,
            WORKERS=workers,
            THREADS=threads,
            WORKER_CLASS=worker_class,
            PRELOAD=1 if preload else 0,
        )

    def _environment(
        self, settings: Mapping[str, object], **serving: object
    ) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PRINTZ_", "SENTRY_")) and name not in _PLAIN_NAMES
        }
        instance = self.scratch_dir / "instance"
        instance.mkdir(parents=True, exist_ok=True)
        env.update(
            PRINTZ_INSTANCE_PATH=str(instance),
            PRINTZ_HOST="127.0.0.1",
            PRINTZ_PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        for name, value in serving.items():
            env[f"PRINTZ_{name}"] = str(value)
        for name, value in settings.items():
            key = name if name.startswith("PRINTZ_") else f"PRINTZ_{name}"
            env[key] = str(value)
        return env

    def start(self, timeout: float = START_TIMEOUT) -> GunicornServer:
        """Start gunicorn and wait until a worker answers ``/healthz``."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self._command,
                cwd=ROOT,
                env=self._env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GunicornError(
                    f"gunicorn exited with {self.process.returncode}:\n"
                    f"{self.log_text()[-4000:]}"
                )
            if self._healthy():
                return self
            time.sleep(0.2)
        self.kill()
        raise GunicornError(
            f"gunicorn served nothing within {timeout}s:\n{self.log_text()[-4000:]}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the master, wait for a graceful exit; the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise GunicornError(
                    f"gunicorn ignored SIGTERM for {timeout}s:\n"
                    f"{self.log_text()[-4000:]}"
                ) from None
        return self.process.returncode

    def kill(self) -> None:
        """Kill the master and its workers at once."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()
