"""Printz's copy of plain transactions gives exactly what the SDK's serializer gives."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
import sentry_sdk.client
import sentry_sdk.serializer
from sentry_sdk.utils import AnnotatedValue

from printz.observability import serialize

OPTIONS = {"max_request_body_size": "medium", "max_value_length": None}
TRIMMED = AnnotatedValue.removed_because_over_size_limit()
WITHHELD = AnnotatedValue.substituted_because_contains_sensitive_data()


@pytest.fixture
def seen_by_the_serializer(monkeypatch):
    """Every event the SDK hands to its serializer, as it was handed over."""
    seen = []
    installed = sentry_sdk.client.serialize

    def recording(event, **options):
        seen.append((copy.deepcopy(event), options))
        return installed(event, **options)

    monkeypatch.setattr(sentry_sdk.client, "serialize", recording)
    return seen


def both(event: dict, **options) -> tuple[dict, dict]:
    ours = serialize.serialize(copy.deepcopy(event), **options)
    sdks = sentry_sdk.serializer.serialize(copy.deepcopy(event), **options)
    return ours, sdks


def test_printz_installs_its_serializer_with_sentry(app):
    assert sentry_sdk.client.serialize is serialize.serialize


def test_a_real_transaction_is_copied_and_equals_the_sdks_result(
    customer, sentry_sink, seen_by_the_serializer
):
    customer.get("/api/orders")
    customer.get("/api/products?q=cards")
    sentry_sdk.flush(timeout=2)

    transactions = [
        (event, options)
        for event, options in seen_by_the_serializer
        if event.get("type") == "transaction"
    ]
    assert len(transactions) >= 2
    for event, options in transactions:
        assert event["spans"], "a request with database calls has spans"
        copied = serialize.plain_copy(event, keep_bodies=False)
        assert copied is not None, f"{event['transaction']} took the slow path"
        ours, sdks = both(event, **options)
        assert ours == sdks


def test_the_copy_shares_nothing_with_the_event():
    argv = ["gunicorn", "wsgi:app"]
    event = {"type": "transaction", "extra": {"sys.argv": argv}, "spans": []}

    copied = serialize.serialize(event, **OPTIONS)
    copied["extra"]["sys.argv"][0] = "[Filtered]"

    assert argv == ["gunicorn", "wsgi:app"]


BASE = {
    "type": "transaction",
    "transaction": "/api/orders",
    "contexts": {"trace": {"op": "http.server", "data": {"thread.id": "1"}}},
    "spans": [{"op": "db", "description": '{"find": "orders"}', "data": {"n": 1}}],
    "request": {"method": "POST", "headers": {"Cookie": "[Filtered]"}},
    "extra": {"sys.argv": ["gunicorn"]},
    "tags": {"plugin": "orders"},
}


@pytest.mark.parametrize(
    ("change", "fast"),
    [
        ({}, True),
        ({"extra": {str(n): n for n in range(10)}}, True),
        ({"extra": {str(n): n for n in range(11)}}, False),
        ({"request": {"data": {"a": {"b": {"c": {"d": 1}}}}}}, True),
        ({"request": {"data": {"a": {"b": {"c": {"d": {"e": 1}}}}}}}, False),
        ({"request": {"data": list(range(11))}}, False),
        ({"request": {"data": TRIMMED}}, True),
        ({"request": {"headers": {"Cookie": WITHHELD}}}, True),
        ({"measurements": {"lcp": {"value": float("nan")}}}, False),
        ({"timestamp": datetime(2026, 12, 3, tzinfo=UTC)}, True),
        ({"tags": {"pair": (1, 2)}}, True),
        ({"tags": {"pair": {1, 2}}}, False),
        ({"contexts": {1: "not a str key"}}, False),
        ({"breadcrumbs": {"values": [{"message": "hi"}]}}, False),
        ({"extra": {"blob": b"bytes"}}, False),
    ],
    ids=[
        "plain",
        "extra-at-breadth",
        "extra-past-breadth",
        "body-at-depth",
        "body-past-depth",
        "body-list-past-breadth",
        "annotated-body",
        "annotated-cookie",
        "nan",
        "datetime",
        "tuple",
        "set",
        "int-key",
        "breadcrumbs",
        "bytes",
    ],
)
def test_whatever_the_event_the_result_is_the_sdks(change, fast):
    event = {**copy.deepcopy(BASE), **change}

    ours, sdks = both(event, **OPTIONS)

    assert ours == sdks
    assert (serialize.plain_copy(event, keep_bodies=False) is not None) is fast


def test_error_events_always_go_to_the_sdks_serializer():
    event = {"level": "error", "extra": {"when": datetime(2026, 12, 3, tzinfo=UTC)}}

    ours, sdks = both(event, **OPTIONS)

    assert ours == sdks
    assert isinstance(ours["extra"]["when"], str)
