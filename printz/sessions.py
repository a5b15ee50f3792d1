"""Server-side sessions in Redis that survive a Redis outage.

flask-session reads the session while Flask pushes the request context, before
any error handler can answer, so a Redis outage would fail every request that
carries a cookie, the catalogue included. Here a failed read gives a stand-in
session instead: a route that never looks at the session still answers, and
the first look from one that does raises DependencyUnavailable (a 503).
"""

from __future__ import annotations

import logging

import redis.exceptions
from flask import Flask
from flask_session.redis import RedisSessionInterface
from flask_session.redis.redis import RedisSession

from printz.errors import DependencyUnavailable

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
KEY_PREFIX = "session:"


class UnavailableSession(RedisSession):
    """Stands in for a session Redis could not return; using it is a 503."""

    def _unavailable(self, *args, **kwargs):
        raise DependencyUnavailable("redis")

    def __contains__(self, key: object) -> bool:
        # Hooks that run on every response (flask-login's remember-cookie check)
        # only ask whether a key is there; "no" lets a route that never used
        # the session answer normally.
        return False

    __getitem__ = __setitem__ = __delitem__ = _unavailable
    get = setdefault = pop = update = clear = _unavailable


class RedisSessions(RedisSessionInterface):
    def open_session(self, app: Flask, request):
        try:
            return super().open_session(app, request)
        except REDIS_ERRORS as error:
            log.warning("session store unreachable: %s", error)
            return UnavailableSession(sid="unavailable", permanent=False)

    def save_session(self, app: Flask, session, response) -> None:
        if isinstance(session, UnavailableSession):
            return
        try:
            super().save_session(app, session, response)
        except REDIS_ERRORS as error:
            # The view has answered already; without a saved session the
            # customer will be asked to sign in again, which beats a 500.
            log.warning("session could not be saved: %s", error)


def init_app(app: Flask, client: redis.Redis) -> None:
    """Sessions under ``session:`` in Redis; the cookie holds only the id."""
    app.session_interface = RedisSessions(
        app,
        client=client,
        key_prefix=KEY_PREFIX,
        use_signer=False,
        permanent=True,
        sid_length=32,
        serialization_format="json",
    )
