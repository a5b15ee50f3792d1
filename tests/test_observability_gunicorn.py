"""Sentry under real gunicorn: identities stay apart, nothing is lost at exit.

Two customers hammer one server (two gthread workers, eight threads each, or two
gevent workers) at the same time; every event and transaction Sentry receives
must carry the user that made its request, and no other. Run with and without
``--preload``: with it the SDK starts in the master and must work in the forked
workers.
"""

from __future__ import annotations

import itertools
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
import redis
import requests

from tests.conftest import PASSWORD, mongo_uri_for, new_email
from tests.support.gunicorn_server import GunicornServer

ROUNDS = 24
FAILING_EVERY = 3


@pytest.fixture
def server_settings(services, sentry_sink, db_name):
    redis.Redis.from_url(services.redis_url).flushdb()
    yield {
        "PRINTZ_ENV": "test",
        "SECRET_KEY": "gunicorn-test-secret-key",
        "MONGO_URI": mongo_uri_for(services.mongo_uri, db_name),
        "REDIS_URL": services.redis_url,
        "SENTRY_DSN": sentry_sink.dsn,
        "SENTRY_TRACES_SAMPLE_RATE": "1.0",
    }
    client = pymongo.MongoClient(services.mongo_uri, serverSelectionTimeoutMS=3000)
    client.drop_database(db_name)
    client.close()


def signed_up(url: str, name: str) -> requests.Session:
    browser = requests.Session()
    answer = browser.post(
        url + "/api/auth/register",
        json={"email": new_email(name), "password": PASSWORD, "name": name},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    browser.user_id = answer.json()["id"]
    return browser


def hammer(url: str, customers: dict[str, requests.Session]) -> list[str]:
    """Every customer's requests interleaved on many threads; the failing ids."""
    jobs = []
    for number, name in itertools.product(range(ROUNDS), customers):
        failing = number % FAILING_EVERY == 0
        path = "/debug-sentry" if failing else "/api/auth/me"
        jobs.append((customers[name], path, f"{name}-{number:04d}-{uuid.uuid4().hex}"))

    def send(job):
        browser, path, request_id = job
        answer = browser.get(
            url + path, headers={"X-Request-ID": request_id}, timeout=20
        )
        assert answer.status_code == (500 if path == "/debug-sentry" else 200)
        return request_id if path == "/debug-sentry" else None

    with ThreadPoolExecutor(max_workers=16) as pool:
        return [request_id for request_id in pool.map(send, jobs) if request_id]


def owner(request_id: str) -> str:
    """Whose request it was: ids are ``<customer>-<number>-<random>``."""
    return request_id.split("-", 1)[0]


@pytest.mark.parametrize(
    ("worker_class", "preload"),
    [("gthread", False), ("gthread", True), ("gevent", False)],
    ids=["gthread", "gthread-preload", "gevent"],
)
def test_concurrent_customers_never_carry_each_others_identity(
    worker_class, preload, server_settings, sentry_sink, tmp_path
):
    with GunicornServer(
        server_settings,
        tmp_path,
        workers=2,
        threads=8,
        worker_class=worker_class,
        preload=preload,
    ) as server:
        customers = {
            "alice": signed_up(server.url, "alice"),
            "bob": signed_up(server.url, "bob"),
        }
        sentry_sink.clear()
        failing = hammer(server.url, customers)

        expected = len(customers) * ROUNDS
        sentry_sink.wait_for(
            lambda sink: (
                len(sink.events()) >= len(failing)
                and len(sink.transactions()) >= expected
            ),
            timeout=30,
        )

    user_ids = {name: browser.user_id for name, browser in customers.items()}
    hammered = [
        item
        for item in sentry_sink.events() + sentry_sink.transactions()
        if owner(item["tags"]["request_id"]) in customers
    ]
    assert len(hammered) >= len(failing) + len(customers) * ROUNDS
    for item in hammered:
        request_id = item["tags"]["request_id"]
        assert item["user"] == {"id": user_ids[owner(request_id)], "role": "customer"}
    assert {event["tags"]["request_id"] for event in sentry_sink.events()} == set(
        failing
    )


def test_logs_under_load_carry_their_own_request_and_user(
    server_settings, sentry_sink, tmp_path
):
    with GunicornServer(server_settings, tmp_path, workers=2, threads=8) as server:
        customers = {
            "carol": signed_up(server.url, "carol"),
            "dave": signed_up(server.url, "dave"),
        }
        sentry_sink.clear()
        failing = hammer(server.url, customers)

    user_ids = {name: browser.user_id for name, browser in customers.items()}
    logged = [
        record
        for record in sentry_sink.logs()
        if owner(record["attributes"].get("request_id", {}).get("value", "-"))
        in customers
    ]
    assert {record["attributes"]["request_id"]["value"] for record in logged} >= set(
        failing
    )
    for record in logged:
        request_id = record["attributes"]["request_id"]["value"]
        assert record["attributes"]["user_id"]["value"] == user_ids[owner(request_id)]
    # gunicorn's access line stays in its own log: as a Sentry log it would
    # cost every request, traced or not, and repeat the transaction.
    loggers = {
        record["attributes"].get("logger.name", {}).get("value")
        for record in sentry_sink.logs()
    }
    assert "printz.observability.errors" in loggers, loggers
    assert "gunicorn.access" not in loggers


def test_a_worker_sends_what_it_still_holds_when_it_exits(
    server_settings, sentry_sink, tmp_path
):
    server = GunicornServer(server_settings, tmp_path, workers=1, threads=2).start()
    try:
        browser = signed_up(server.url, "erin")
        sentry_sink.clear()
        browser.get(
            server.url + "/debug-sentry",
            headers={"X-Request-ID": "last-words-0001"},
            timeout=10,
        )
    finally:
        assert server.stop() == 0

    # Logs are batched for about five seconds; the exit flushed this one now.
    logged = [
        record
        for record in sentry_sink.logs()
        if record.get("attributes", {}).get("request_id", {}).get("value")
        == "last-words-0001"
    ]
    assert logged
    assert "Sentry events flushed" in server.log_text()


def test_gunicorns_own_log_keeps_no_secret_from_a_query_string(
    server_settings, tmp_path
):
    secret_query = "token=tok_sekrit_4242&password=hunter2sekrit"
    with GunicornServer(server_settings, tmp_path, workers=1, threads=2) as server:
        answer = requests.get(f"{server.url}/api/products?{secret_query}", timeout=10)
        assert answer.status_code == 422
        # A request gunicorn refuses itself is logged with its raw line.
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(
                f"GET /api/products?{secret_query} HTTP/1.1\r\n"
                "Host: x\r\nBad Header: x\r\n\r\n".encode()
            )
            assert raw.recv(4096).startswith(b"HTTP/1.1 400")
    log = server.log_text()

    assert '"GET /api/products HTTP/1.1" 422' in log
    assert "Invalid request" in log
    assert "tok_sekrit_4242" not in log
    assert "hunter2sekrit" not in log
