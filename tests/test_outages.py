"""Dependency outages: each answered quickly, each recovered without a restart.

Every test here stops and restarts a real server of its own, on a fixed port,
so the app under test keeps the same settings through the outage.
"""

from __future__ import annotations

import time

import pytest
import sentry_sdk

from printz import create_app
from printz.cli import create_indexes, seed_data
from printz.devstack import free_port, start_mongo, start_redis
from tests.conftest import PASSWORD, mongo_uri_for, new_email, register


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


class Restartable:
    """A server only this test uses, stopped and started again on one port."""

    def __init__(self, start, data_dir) -> None:
        self._start, self._data_dir, self._port = start, data_dir, free_port()
        self.service = start(data_dir, port=self._port)
        self.url = self.service.url

    def stop(self) -> None:
        self.service.stop()

    def restart(self) -> None:
        self.service = self._start(self._data_dir, port=self._port)


@pytest.fixture
def own_redis(tmp_path):
    server = Restartable(start_redis, tmp_path / "redis")
    yield server.url, server.stop, server.restart
    server.stop()


@pytest.fixture
def own_mongo(tmp_path):
    server = Restartable(start_mongo, tmp_path / "mongo")
    yield server.url, server.stop, server.restart
    server.stop()


def build_app(settings, **overrides):
    settings.update(overrides)
    app = create_app(settings)
    with app.app_context():
        create_indexes()
        seed_data()
    return app


def test_redis_outage_keeps_the_catalogue_and_fails_sessions_fast(
    settings, own_redis, sentry_sink
):
    url, stop, restart = own_redis
    app = build_app(settings, REDIS_URL=url, REDIS_TIMEOUT_S=1.0)
    customer = app.test_client()
    register(customer)
    stop()

    catalogue, _ = timed(lambda: customer.get("/api/products"))
    me, me_seconds = timed(lambda: customer.get("/api/auth/me"))
    ready = customer.get("/readyz")

    assert catalogue.status_code == 200
    assert me.status_code == 503
    assert me.get_json()["error"]["dependency"] == "redis"
    assert me_seconds < 5
    assert ready.status_code == 503
    assert ready.get_json()["error"]["failed"] == ["redis"]
    assert app.test_client().get("/healthz").status_code == 200

    restart()

    assert customer.get("/readyz").status_code == 200
    fresh = app.test_client()
    register(fresh)
    assert fresh.get("/api/auth/me").status_code == 200


def test_login_limits_fall_back_to_process_counters_when_redis_is_down(
    settings, own_redis, caplog, sentry_sink
):
    url, stop, _ = own_redis
    app = build_app(settings, REDIS_URL=url, REDIS_TIMEOUT_S=0.5)
    email = new_email()
    register(app.test_client(), email=email)
    stop()

    statuses = [
        app.test_client()
        .post("/api/auth/login", json={"email": email, "password": "wrong password"})
        .status_code
        for _ in range(6)
    ]

    # Sessions are down, so a right password could not sign in; the limiter
    # still counts in memory and refuses the sixth attempt.
    assert statuses[-1] == 429
    assert caplog.text.lower().count("falling back") == 1
    sentry_sdk.flush(timeout=2)
    fallbacks = [
        event
        for event in sentry_sink.events()
        if "falling back" in str(event.get("logentry", {}).get("message", ""))
    ]
    assert len(fallbacks) == 1


def test_mongo_outage_is_a_fast_503_reported_once_per_dependency(
    settings, own_mongo, sentry_sink, db_name
):
    url, stop, restart = own_mongo
    app = build_app(
        settings, MONGO_URI=mongo_uri_for(url, db_name), MONGO_TIMEOUT_MS=1000
    )
    customer = app.test_client()
    register(customer)
    customer.post("/api/auth/logout")
    sentry_sink.clear()
    stop()

    answers = []
    for _ in range(3):
        response, seconds = timed(
            lambda: customer.post(
                "/api/auth/login", json={"email": new_email(), "password": PASSWORD}
            )
        )
        answers.append((response, seconds))

    for response, seconds in answers:
        assert response.status_code == 503
        assert response.get_json()["error"]["dependency"] == "mongo"
        assert seconds < 5
    sentry_sdk.flush(timeout=2)
    events = sentry_sink.wait_for(lambda sink: len(sink.events()) >= 3 and sink)
    fingerprints = {tuple(event["fingerprint"]) for event in events.events()}
    assert fingerprints == {("dependency-unavailable", "mongo")}
    assert customer.get("/readyz").get_json()["error"]["failed"] == ["mongo"]

    restart()

    signed_up = app.test_client()
    user = register(signed_up)
    assert signed_up.get("/api/auth/me").get_json()["id"] == user["id"]
    assert customer.get("/readyz").status_code == 200


def test_nothing_stored_is_lost_across_a_mongo_restart(settings, own_mongo, db_name):
    url, stop, restart = own_mongo
    app = build_app(settings, MONGO_URI=mongo_uri_for(url, db_name))
    email = new_email()
    register(app.test_client(), email=email)
    stop()
    restart()

    again = app.test_client().post(
        "/api/auth/login", json={"email": email, "password": PASSWORD}
    )

    assert again.status_code == 200


def test_a_hanging_sentry_adds_no_latency(settings, sentry_sink):
    app = create_app(settings)
    client = app.test_client()
    client.get("/healthz")
    sentry_sink.mode = "hang"
    try:
        _, seconds = timed(lambda: [client.get("/debug-sentry") for _ in range(5)])
        ok, ok_seconds = timed(lambda: client.get("/api/auth/me"))
    finally:
        sentry_sink.mode = "ok"

    assert seconds < 2
    assert ok.status_code == 401
    assert ok_seconds < 0.5
