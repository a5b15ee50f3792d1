"""Workarounds for defects of the installed sentry-sdk, each with what removes it.

Redis spans left open by a failing command. sentry-sdk 2.75's Redis
integration opens a span (and a cache span for ``catalog:`` keys), runs the
command, and closes the spans only when it returns
(``sentry_sdk/integrations/redis/_sync_common.py``,
``sentry_patched_execute_command``). A command that raises, as every one does
during a Redis outage, leaves its span open and active: the rest of the
request's spans become its children, it is dropped from the transaction for
never finishing, and outside a request it stays the thread's active span for
good. Fixed upstream by getsentry/sentry-python#7409 ("Close spans on
exception in execute_command"); remove this when Printz moves to an SDK that
has it.

Redis spans made for requests that are not traced. The Redis integration
makes its spans (and a cache span for ``catalog:`` keys) whether or not the
request is sampled; an unsampled transaction never sends them, and on an
untraced catalogue request they were a tenth of the worker's time. Outside a
sampled transaction the command runs unwrapped, with the breadcrumb the
integration would have left, so an error event still shows the command. The
SDK's helpers make the breadcrumb's text, so it reads as the integration's.
Remove when the SDK skips span work for unsampled transactions (as its
span-streaming mode already does).

MongoDB spans made for requests that are not traced. The PyMongo integration's
command listener deep-copies each command (its session id included), starts a
span and sets a dozen tags and data on it, sampled or not: on an untraced
orders request that was about a tenth of the worker's time. ``PyMongoIntegration``
below is the SDK's, with a listener that, outside a sampled transaction, leaves
only the integration's breadcrumb, made as the SDK makes it (the command minus
the session and cluster fields, which the breadcrumb never shows, copied and
stripped of values). A traced command goes to the SDK's listener unchanged. A
subclass rather than a patch: the SDK finds it by its identifier, ``pymongo``.
Remove with the Redis workaround above.

The SDK's own logger at DEBUG with debug off. ``sentry_sdk.debug`` sets the
``sentry_sdk.errors`` logger to DEBUG and hides its records with a filter
unless ``debug`` is on, so each of the SDK's debug lines (several per request,
traced or not: the sampling decision, the unsampled transaction) is built as
a record and then thrown away. With debug off, nothing below a warning can
pass the filter; raising the logger's level drops them before they are built.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import sys
from typing import Any

import redis
import sentry_sdk
from pymongo import monitoring
from sentry_sdk.consts import OP, SPANDATA
from sentry_sdk.integrations import pymongo as sdk_pymongo
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.integrations.redis.modules.queries import _compile_db_span_properties
from sentry_sdk.integrations.redis.utils import _extract_key
from sentry_sdk.scope import should_send_default_pii
from sentry_sdk.tracing_utils import has_span_streaming_enabled
from sentry_sdk.utils import has_data_collection_enabled

# The integration opens at most two spans per command: the cache span and the
# query span.
_MOST_SPANS_LEFT_OPEN = 2
# redis-py's own execute_command, taken before the SDK wraps it (this module is
# imported before sentry_sdk.init); None if something wrapped it earlier.
_PLAIN_EXECUTE_COMMAND = (
    None
    if "sentry" in getattr(redis.Redis.execute_command, "__qualname__", "sentry")
    else redis.Redis.execute_command
)


def close_redis_spans_on_error() -> None:
    """Make a failing Redis command close the spans it opened (once per process).

    Also runs commands outside a sampled transaction without the
    integration's spans (see the module's docstring).
    """
    patched = redis.Redis.execute_command
    if getattr(patched, "printz_closes_spans", False):
        return

    @functools.wraps(patched)
    def execute_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        scope = sentry_sdk.get_current_scope()
        active = scope.span
        if _PLAIN_EXECUTE_COMMAND is not None and (
            active is None or not active.sampled
        ):
            _leave_breadcrumb(args)
            return _PLAIN_EXECUTE_COMMAND(self, *args, **kwargs)
        try:
            return patched(self, *args, **kwargs)
        except BaseException:
            # Whatever happens here, the command's own error is what goes on.
            with contextlib.suppress(Exception):
                _close_spans_opened_since(scope, active, sys.exc_info())
            raise

    execute_command.printz_closes_spans = True  # type: ignore[attr-defined]
    redis.Redis.execute_command = execute_command


def _leave_breadcrumb(args: tuple[Any, ...]) -> None:
    """The breadcrumb the Redis integration leaves for a command."""
    with contextlib.suppress(Exception):
        integration = sentry_sdk.get_client().get_integration(RedisIntegration)
        if integration is None or not args:
            return
        name, arguments = args[0], args[1:]
        data = {"redis.is_cluster": False, "redis.command": name, "db.operation": name}
        key = _extract_key(name, arguments)
        if key is not None:
            data["redis.key"] = key
        sentry_sdk.add_breadcrumb(
            message=_compile_db_span_properties(integration, name, arguments)[
                "description"
            ],
            type="redis",
            category="redis",
            data=data,
        )


def _close_spans_opened_since(scope: sentry_sdk.Scope, active: Any, exc_info) -> None:
    for _ in range(_MOST_SPANS_LEFT_OPEN):
        left_open = scope.span
        if left_open is None or left_open is active:
            return
        # A span's own exit marks it internal_error, finishes it and makes the
        # span it was opened under active again.
        left_open.__exit__(*exc_info)
    scope.span = active


# Fields of a command the SDK's listener removes before showing it.
_MONGO_FIELDS_NOT_SHOWN = ("$db", "$clusterTime", "$signature", "lsid")


class _CommandTracer(sdk_pymongo.CommandTracer):
    """The SDK's listener, reduced to its breadcrumb outside a sampled trace."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        client = sentry_sdk.get_client()
        span = sentry_sdk.get_current_span()
        if (span is not None and span.sampled) or has_span_streaming_enabled(
            client.options
        ):
            super().started(event)
            return
        if client.get_integration(PyMongoIntegration) is None:
            return
        with contextlib.suppress(Exception):
            _leave_mongo_breadcrumb(client, event)


def _leave_mongo_breadcrumb(client: Any, event: monitoring.CommandStartedEvent) -> None:
    """The breadcrumb the SDK's listener leaves for a command: same text, data."""
    shown = {
        key: value
        for key, value in event.command.items()
        if key not in _MONGO_FIELDS_NOT_SHOWN
    }
    command = copy.deepcopy(shown)
    if has_data_collection_enabled(client.options):
        if not client.options["data_collection"]["database_query_data"]:
            command = sdk_pymongo._strip_pii(command)
    elif not should_send_default_pii():
        command = sdk_pymongo._strip_pii(command)
    tags = {
        "db.name": event.database_name,
        SPANDATA.DB_SYSTEM: "mongodb",
        SPANDATA.DB_DRIVER_NAME: "pymongo",
        SPANDATA.DB_OPERATION: event.command_name,
        SPANDATA.DB_MONGODB_COLLECTION: shown.get(event.command_name),
    }
    with contextlib.suppress(TypeError):
        tags["net.peer.name"] = event.connection_id[0]
        tags["net.peer.port"] = str(event.connection_id[1])
    sentry_sdk.add_breadcrumb(
        message=json.dumps(command, default=str),
        category="query",
        type=OP.DB,
        data=tags,
    )


class PyMongoIntegration(sdk_pymongo.PyMongoIntegration):
    """The SDK's PyMongo integration with the listener above."""

    @staticmethod
    def setup_once() -> None:
        monitoring.register(_CommandTracer())


def quiet_sdk_logger() -> None:
    """Skip building the SDK's debug records its own filter would discard."""
    if not sentry_sdk.get_client().options.get("debug"):
        logging.getLogger("sentry_sdk.errors").setLevel(logging.WARNING)
