"""Transactions that are plain JSON already are copied, not walked by the SDK.

sentry-sdk passes every event through ``sentry_sdk.serializer.serialize``
before ``before_send_transaction``: a general walk that records its path,
guards every node against cycles and notes any trimming in ``_meta``, so that
frame variables and request bodies of any type can be sent safely. A
transaction is built by the SDK from dicts, lists, strings and numbers, and on
a catalogue request that walk cost about 0.7 ms: a fifth of all that tracing
the request cost (bench/request_cost.py, py-spy).

``serialize`` gives the SDK's result for a transaction whose every value is
already JSON (str, int, bool, None, finite float, dict with str keys, list)
or a datetime or tuple (sent as the SDK sends them), and whose databags (``extra``,
``request.data``) keep within the SDK's depth and breadth limits: a copy made
in one pass. Anything else (an error event, a
body to trim, a set, a value the SDK would ``repr``)
goes to the SDK's serializer unchanged. The copy matters: the scrubber edits
what it is given, and an event shares lists with the process
(``extra["sys.argv"]`` is ``sys.argv``).

Checked against the SDK's own serializer in tests/test_sentry_serialize.py.
Remove when the SDK's serializer has a fast path of its own.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import sentry_sdk.client
import sentry_sdk.serializer
from sentry_sdk.utils import AnnotatedValue, format_timestamp

_sdk_serialize = sentry_sdk.serializer.serialize

# The SDK's limits for databags, the parts of an event holding arbitrary data.
_DATABAG_DEPTH = sentry_sdk.serializer.MAX_DATABAG_DEPTH
_DATABAG_BREADTH = sentry_sdk.serializer.MAX_DATABAG_BREADTH
# Deeper than this outside a databag is not an SDK-built transaction.
_MOST_LEVELS = 32


class _NotPlain(Exception):
    """The event needs the SDK's serializer."""


def install() -> None:
    """Route the SDK's event serialisation through ``serialize`` (idempotent)."""
    sentry_sdk.client.serialize = serialize  # type: ignore[attr-defined]


def serialize(event: dict[str, Any], **options: Any) -> dict[str, Any]:
    """What ``sentry_sdk.serializer.serialize`` returns, cheaper when it can be."""
    if (
        isinstance(event, dict)
        and event.get("type") == "transaction"
        and not options.get("is_vars")
        and options.get("max_value_length") is None
        and not sentry_sdk.serializer.global_repr_processors
    ):
        copied = plain_copy(event, options.get("max_request_body_size") == "always")
        if copied is not None:
            return copied
    return _sdk_serialize(event, **options)


def plain_copy(event: dict[str, Any], keep_bodies: bool) -> dict[str, Any] | None:
    """A copy of a plain-JSON event, or None when the SDK must serialise it."""
    notes: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    try:
        copied = {}
        for key, value in event.items():
            if type(key) is not str or key == "breadcrumbs":
                raise _NotPlain
            if key == "extra":
                copied[key] = _copy(value, _DATABAG_DEPTH, (key,), notes)
            elif key == "request" and type(value) is dict:
                copied[key] = _copy_request(value, keep_bodies, notes)
            else:
                copied[key] = _copy(value, None, (key,), notes)
    except (_NotPlain, RecursionError):
        return None
    if notes:
        copied["_meta"] = _meta(notes)
    return copied


def _copy_request(
    request: dict[str, Any], keep_bodies: bool, notes: list
) -> dict[str, Any]:
    copied = {}
    for key, value in request.items():
        if type(key) is not str:
            raise _NotPlain
        body = key == "data" and not keep_bodies
        copied[key] = _copy(
            value, _DATABAG_DEPTH if body else None, ("request", key), notes
        )
    return copied


def _meta(notes: list[tuple[tuple[str, ...], dict[str, Any]]]) -> dict[str, Any]:
    """The ``_meta`` tree the SDK writes: each annotation under its value's path."""
    root: dict[str, Any] = {}
    for path, metadata in notes:
        node = root
        for segment in path:
            node = node.setdefault(segment, {})
        node.setdefault("", {}).update(metadata)
    return root


def _copy(
    value: Any, depth_left: int | None, path: tuple[str, ...], notes: list
) -> Any:
    """Copy ``value``; ``depth_left`` counts down inside a databag, else None.

    The checks follow the order of the SDK's own walk, so each kind of value
    comes out as the SDK would send it. An annotated value (the SDK marks a
    cookie header it withheld this way) is sent as its value, its note kept
    for ``_meta``.
    """
    if type(value) is AnnotatedValue:
        notes.append((path, value.metadata))
        value = value.value
        if type(value) is AnnotatedValue:
            raise _NotPlain
    if depth_left is not None and depth_left <= 0:
        raise _NotPlain  # the SDK would cut it here and say so in _meta
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotPlain  # the SDK sends repr() of inf and nan
        return value
    if callable(getattr(kind, "__sentry_repr__", None)):
        raise _NotPlain
    if isinstance(value, datetime):
        return str(format_timestamp(value))
    if len(path) >= _MOST_LEVELS:
        raise _NotPlain
    inner = None if depth_left is None else depth_left - 1
    if kind is dict:
        if depth_left is not None and len(value) > _DATABAG_BREADTH:
            raise _NotPlain
        copied = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            copied[key] = _copy(item, inner, (*path, key), notes)
        return copied
    if kind is list or kind is tuple:  # the SDK sends a tuple as a list
        if depth_left is not None and len(value) > _DATABAG_BREADTH:
            raise _NotPlain
        return [
            _copy(item, inner, (*path, str(index)), notes)
            for index, item in enumerate(value)
        ]
    if isinstance(value, str):
        return value  # a str enum, kept as the SDK keeps it
    raise _NotPlain
