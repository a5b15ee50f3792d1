"""The shared resources: MongoDB, Redis, sessions, login manager, rate limiter.

Order matters and is set by ``init_extensions``: Redis first (sessions and the
limiter store their state there), then MongoDB, sessions, login, limiter.
Nothing here opens a connection at import or at ``init_app``: clients are made
on first use in each process, so gunicorn's ``--preload`` forks no sockets.
"""

from __future__ import annotations

import logging
import os
import threading

import pymongo
import redis
from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from pymongo.database import Database

from printz import sessions
from printz.errors import DependencyUnavailable, Unauthorized

log = logging.getLogger(__name__)


class Mongo:
    """The MongoDB client and the application database, one client per process.

    pymongo starts monitor threads when a client is made, and a forked child
    must not inherit them, so the client is made on first use and again after
    a fork (gunicorn ``--preload``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def init_app(self, app: Flask) -> None:
        if not app.config.get("MONGO_URI"):
            log.warning("MONGO_URI is not set: requests that need MongoDB fail")
        app.extensions["printz.mongo"] = {"client": None, "pid": None}

    def client_for(self, app: Flask) -> pymongo.MongoClient:
        state = app.extensions["printz.mongo"]
        if state["client"] is None or state["pid"] != os.getpid():
            with self._lock:
                if state["client"] is None or state["pid"] != os.getpid():
                    state["client"] = self._connect(app)
                    state["pid"] = os.getpid()
        return state["client"]

    def _connect(self, app: Flask) -> pymongo.MongoClient:
        uri = app.config.get("MONGO_URI")
        if not uri:
            raise DependencyUnavailable("mongo", "MONGO_URI is not configured.")
        timeout = app.config["MONGO_TIMEOUT_MS"]
        return pymongo.MongoClient(
            uri,
            serverSelectionTimeoutMS=timeout,
            connectTimeoutMS=timeout,
            socketTimeoutMS=max(timeout, 10_000),
            appname="printz",
            tz_aware=True,
        )

    def close(self, app: Flask) -> None:
        state = app.extensions["printz.mongo"]
        client, state["client"] = state["client"], None
        if client is not None and state["pid"] == os.getpid():
            client.close()

    @property
    def client(self) -> pymongo.MongoClient:
        return self.client_for(current_app)

    @property
    def db(self) -> Database:
        name = current_app.config.get("MONGO_DB_NAME") or "printz"
        return self.client.get_default_database(default=name)

    def ping(self) -> None:
        self.client.admin.command("ping")


# Used when REDIS_URL is unset: nothing listens on port 1, so every use fails
# fast as "redis unavailable" (a 503 and a failed /readyz), not at start-up.
UNCONFIGURED_REDIS_URL = "redis://127.0.0.1:1/0"


class Redis:
    """The Redis client shared by the cache, sessions and the rate limiter.

    redis-py opens no socket until the first command and its pool notices a
    fork by itself, so one client per app is made at ``init_app``.
    """

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        if not url:
            log.warning("REDIS_URL is not set: sessions and the cache fail")
        timeout = app.config["REDIS_TIMEOUT_S"]
        app.extensions["printz.redis"] = redis.Redis.from_url(
            url or UNCONFIGURED_REDIS_URL,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["printz.redis"]

    def ping(self) -> None:
        self.client.ping()


mongo = Mongo()
redis_store = Redis()
login_manager = LoginManager()


def _client_address() -> str:
    return get_remote_address() or "unknown"


limiter = Limiter(
    key_func=_client_address,
    headers_enabled=True,
    in_memory_fallback_enabled=True,
    swallow_errors=True,
    strategy="fixed-window",
)


def init_sessions(app: Flask) -> None:
    sessions.init_app(app, app.extensions["printz.redis"])


def init_login(app: Flask) -> None:
    """Flask-Login on the server-side session; the auth plugin sets the loader."""
    login_manager.init_app(app)
    # The session id is renewed at login and the session destroyed at logout;
    # flask-login's address-and-agent hash adds nothing to that.
    login_manager.session_protection = None
    if login_manager._user_callback is None:
        login_manager.user_loader(lambda user_id: None)

    @login_manager.unauthorized_handler
    def _unauthorized():
        raise Unauthorized()


class StorageFallbackIsAnOutage(logging.Filter):
    """flask-limiter warns once per outage that it now counts in memory.

    Per-process counters are weaker limits (each worker counts on its own), so
    the on-call engineer must see it in Sentry: the record is raised to ERROR,
    which the logging integration turns into an event.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "falling back" in record.getMessage():
            record.levelno, record.levelname = logging.ERROR, "ERROR"
        return True


def init_limiter(app: Flask) -> None:
    limiter_log = logging.getLogger("flask-limiter")
    if not any(isinstance(f, StorageFallbackIsAnOutage) for f in limiter_log.filters):
        limiter_log.addFilter(StorageFallbackIsAnOutage())
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "")
    if not app.config["RATELIMIT_STORAGE_URI"]:
        app.config["RATELIMIT_STORAGE_URI"] = "memory://"
    app.config.setdefault(
        "RATELIMIT_STORAGE_OPTIONS",
        {
            "socket_timeout": app.config["REDIS_TIMEOUT_S"],
            "socket_connect_timeout": app.config["REDIS_TIMEOUT_S"],
        },
    )
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "ratelimit")
    limiter.init_app(app)


def init_extensions(app: Flask) -> None:
    redis_store.init_app(app)
    mongo.init_app(app)
    init_sessions(app)
    init_login(app)
    init_limiter(app)
