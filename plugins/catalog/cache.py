"""The catalogue cache in Redis: every key starts with ``catalog:``.

Sentry's Redis integration counts GET and SET on that prefix as cache hits and
misses. Entries live under the current catalogue version
(``catalog:v<N>:...``); a change to the catalogue bumps ``catalog:version``, so
old entries are never read again and expire on their own. A bump made while a
reader is between MongoDB and Redis cannot leave stale data behind: that
reader writes under the old version.

Redis is a convenience here: any Redis error is a miss, logged, and the answer
comes from MongoDB.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from printz.errors import DependencyUnavailable
from printz.extensions import redis_store

log = logging.getLogger(__name__)

PREFIX = "catalog:"
VERSION_KEY = PREFIX + "version"
TTL_S = 300


def _entry_key(version: int, kind: str, params: Any) -> str:
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"{PREFIX}v{version}:{kind}:{digest}"


def _current_version(client) -> int:
    # INCRBY 0 reads the counter (creating it at 0) without being a GET, so
    # Sentry's cache hit rate counts catalogue entries only, not this lookup.
    return int(client.incrby(VERSION_KEY, 0))


def cached(kind: str, params: Any, load: Callable[[], Any]) -> Any:
    """The cached answer for `kind` and `params`, else `load()`, then cached.

    A None answer (nothing found) is not cached: unknown slugs would otherwise
    fill Redis with entries nobody reads twice.
    """
    try:
        client = redis_store.client
        key = _entry_key(_current_version(client), kind, params)
        stored = client.get(key)
    except (RedisError, DependencyUnavailable) as error:
        log.warning("catalogue cache unavailable, reading MongoDB: %s", error)
        return load()

    if stored is not None:
        return json.loads(stored)

    value = load()
    if value is not None:
        try:
            client.set(key, json.dumps(value), ex=TTL_S)
        except RedisError as error:
            log.warning("catalogue cache not written: %s", error)
    return value


def invalidate() -> bool:
    """Retire every cached entry; False (logged) when Redis did not answer."""
    try:
        version = redis_store.client.incr(VERSION_KEY)
    except (RedisError, DependencyUnavailable) as error:
        log.warning(
            "catalogue cache not invalidated, entries may be stale for %ss: %s",
            TTL_S,
            error,
        )
        return False
    log.info("catalogue cache now at version %s", version)
    return True
