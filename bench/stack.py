"""Printz as ``make run`` starts it, plus the services and the customer it needs.

One MongoDB and one Redis (the embedded ones unless ``PRINTZ_MONGO_URI`` and
``PRINTZ_REDIS_URL`` name others) serve every Printz a benchmark starts, so
the variants it compares read the same data from the same servers. Each
Printz is ``python -m printz.devstack`` given those URLs, which is what
``make run`` does when they are set: indexes, seed, then gunicorn with
gunicorn.conf.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pymongo
import redis

from bench import procs
from printz.devstack import DevStack, free_port

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 45.0
PASSWORD = "bench horse battery staple"

# Limits that protect real customers and would otherwise stop a load test.
BENCH_LIMITS = {
    "PRINTZ_CHAT_DAILY_MESSAGES": str(10**9),
    "PRINTZ_CHAT_DAILY_TOKENS": str(10**12),
    "PRINTZ_LOGIN_LIMIT_ACCOUNT": "100000 per minute",
    "PRINTZ_LOGIN_LIMIT_ADDRESS": "100000 per minute",
}
# Settings a developer's shell may hold that must not leak into a variant:
# each variant sets its own Sentry and model server, or none.
CLEARED_ENV = (
    "SENTRY_DSN",
    "PRINTZ_SENTRY_DSN",
    "SENTRY_TRACES_SAMPLE_RATE",
    "PRINTZ_SENTRY_TRACES_SAMPLE_RATE",
    "SENTRY_SPOTLIGHT",
    "PRINTZ_SENTRY_SPOTLIGHT",
    "OPENAI_BASE_URL",
    "PRINTZ_OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "PRINTZ_OPENAI_API_KEY",
    "PRINTZ_PORT",
    "PORT",
    "PRINTZ_INSTANCE_PATH",
)
PACKAGES = (
    "flask",
    "sentry-sdk",
    "gunicorn",
    "gevent",
    "openai",
    "pymongo",
    "redis",
    "secantusdb",
)
ORDER_BODY = {
    "items": [{"product": "flyers", "options": {"size": "a5"}, "quantity": 500}],
    "shipping_address": {
        "name": "A",
        "line1": "1 St",
        "city": "Lyon",
        "postal_code": "69001",
        "country": "FR",
    },
}


class BenchError(RuntimeError):
    """The benchmark could not set up or run; the message says what failed."""


@dataclass
class Services:
    """The MongoDB and Redis every Printz of a run talks to."""

    mongo_uri: str
    redis_url: str
    description: dict[str, Any] = field(default_factory=dict)
    # Pids of the servers this run started; none when the URLs were given.
    pids: dict[str, int] = field(default_factory=dict)

    def cpu(self) -> procs.CPUSample:
        return procs.cpu_seconds(self.pids.values())


@contextlib.contextmanager
def shared_services(scratch: Path) -> Iterator[Services]:
    """The services named in the environment, or embedded ones for this run."""
    mongo_uri = os.environ.get("PRINTZ_MONGO_URI") or os.environ.get("MONGO_URI")
    redis_url = os.environ.get("PRINTZ_REDIS_URL") or os.environ.get("REDIS_URL")
    with DevStack(scratch / "services", mongo_uri, redis_url) as stack:
        services = Services(stack.mongo_uri, stack.redis_url)
        services.pids = {child.name: child.pid for child in stack.services}
        services.description = _describe_services(services, embedded=mongo_uri is None)
        yield services


def _describe_services(services: Services, embedded: bool) -> dict[str, Any]:
    with pymongo.MongoClient(services.mongo_uri, serverSelectionTimeoutMS=5000) as db:
        mongo_version = db.admin.command("buildInfo").get("version")
    redis_client = redis.Redis.from_url(services.redis_url, socket_timeout=5)
    try:
        redis_version = redis_client.info("server").get("redis_version")
    finally:
        redis_client.close()
    if embedded:
        # SecantusDB answers buildInfo with the MongoDB version it emulates.
        mongo = (
            f"SecantusDB {_version('secantusdb')} (embedded, pure Python; "
            f"speaks MongoDB {mongo_version})"
        )
    else:
        mongo = f"MongoDB {mongo_version} (from PRINTZ_MONGO_URI)"
    return {"mongodb": mongo, "redis": f"redis-server {redis_version}"}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment_facts() -> dict[str, Any]:
    """Versions and machine facts every result file carries."""
    return {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "printz_env": os.environ.get("PRINTZ_ENV", "development"),
    }


class PrintzServer:
    """One ``python -m printz.devstack`` on a free port, and its gunicorn."""

    def __init__(
        self,
        name: str,
        services: Services,
        scratch: Path,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port(HOST)
        self.instance = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
        self.log_path = self.instance / "printz.log"
        self.settings = dict(settings or {})
        self._services = services
        self.config: dict[str, Any] = {}
        self._process: subprocess.Popen | None = None
        self._master: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
        env.update(BENCH_LIMITS)
        env.update(
            PRINTZ_HOST=HOST,
            PRINTZ_PORT=str(self.port),
            PRINTZ_INSTANCE_PATH=str(self.instance),
            PRINTZ_MONGO_URI=self._services.mongo_uri,
            PRINTZ_REDIS_URL=self._services.redis_url,
        )
        env.update(self.settings)
        # gunicorn's control socket lives at one path per user: a benchmark
        # must not take it from a developer's `make run`, nor one variant
        # from another.
        extra = env.get("GUNICORN_CMD_ARGS", "")
        if "control-socket" not in extra:
            env["GUNICORN_CMD_ARGS"] = f"{extra} --no-control-socket".strip()
        return env

    def start(self) -> PrintzServer:
        self.config = self._serving_config()
        log.info(
            "starting Printz %r on %s (%s)",
            self.name,
            self.url,
            ", ".join(f"{k}={v}" for k, v in self.config.items()),
        )
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "printz.devstack"],
                cwd=ROOT,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise BenchError(f"Printz {self.name!r} exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _, _ = request(self.port, "GET", "/healthz", timeout=2)
                # Every worker must be up, or the first round would measure
                # the boot of the late ones.
                booted = len(self.workers()) >= self.config["workers"]
                if status == 200 and booted:
                    return
            time.sleep(0.3)
        raise BenchError(f"Printz {self.name!r} did not serve:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        leftovers = self.gunicorn_pids()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("Printz %r ignored SIGTERM; killing it", self.name)
                process.kill()
                process.wait()
        # gunicorn is not tied to its parent's life: make sure none outlives it.
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> PrintzServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    # -- the processes whose cost is measured ---------------------------------

    def master_pid(self) -> int | None:
        if self._master is not None and procs.parent_of(self._master) is not None:
            return self._master
        if self._process is None:
            return None
        for pid in procs.children_of(self._process.pid):
            if "gunicorn" in procs.command_line(pid):
                self._master = pid
                return pid
        return None

    def workers(self) -> list[int]:
        master = self.master_pid()
        return procs.children_of(master) if master else []

    def gunicorn_pids(self) -> list[int]:
        master = self.master_pid()
        return [master, *self.workers()] if master else []

    def cpu(self) -> procs.CPUSample:
        return procs.cpu_seconds(self.gunicorn_pids())

    def rss(self) -> int:
        return procs.rss_bytes(self.gunicorn_pids())

    def _serving_config(self) -> dict[str, Any]:
        """Worker class and counts as gunicorn.conf.py resolves them here."""
        env = self.environment()
        script = (
            "import json, runpy; c = runpy.run_path('gunicorn.conf.py'); "
            "print(json.dumps({k: c[k] for k in "
            "('workers', 'worker_class', 'threads', 'worker_connections')}))"
        )
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request to 127.0.0.1, for setting up, never for load."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        sent_headers = {"Content-Type": "application/json"} if payload else {}
        sent_headers.update(headers or {})
        connection.request(method, path, body=payload, headers=sent_headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), data
    finally:
        connection.close()


@dataclass
class Customer:
    """A signed-in customer: the cookie header their browser would send."""

    email: str
    cookie: str


def sign_up(server: PrintzServer, orders: int = 0) -> Customer:
    """Register a new customer on ``server`` and place ``orders`` orders."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    status, headers, body = request(
        server.port,
        "POST",
        "/api/auth/register",
        {"email": email, "password": PASSWORD, "name": "Bench"},
    )
    if status != 201:
        raise BenchError(f"register on {server.name}: {status} {body[:300]!r}")
    cookie = _session_cookie(headers)
    for _ in range(orders):
        status, _, body = request(
            server.port,
            "POST",
            "/api/orders",
            ORDER_BODY,
            headers={"Cookie": cookie, "Idempotency-Key": uuid.uuid4().hex},
        )
        if status != 201:
            raise BenchError(f"order on {server.name}: {status} {body[:300]!r}")
    return Customer(email, cookie)


def _session_cookie(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "set-cookie" and value.startswith("printz_session="):
            return value.split(";", 1)[0]
    raise BenchError(f"no printz_session cookie in {dict(headers)}")
