"""Fixtures: real MongoDB-wire server, real Redis, a real Sentry ingest endpoint.

The services start once per session on free ports (or come from
PRINTZ_TEST_MONGO_URI / PRINTZ_TEST_REDIS_URL). Each test gets its own
database, a flushed Redis and an empty Sentry sink.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pymongo
import pytest
import redis
import sentry_sdk

from printz import create_app
from printz.cli import create_indexes
from printz.devstack import DevStack
from tests.support.sentry_sink import SentrySink

PASSWORD = "correct horse battery"
_emails = itertools.count(1)


@dataclass
class Services:
    mongo_uri: str
    redis_url: str


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> Iterator[Services]:
    """MongoDB and Redis for the whole run: given by the environment or started."""
    mongo_uri = os.environ.get("PRINTZ_TEST_MONGO_URI")
    redis_url = os.environ.get("PRINTZ_TEST_REDIS_URL")
    stack = DevStack(tmp_path_factory.mktemp("devstack"), mongo_uri, redis_url)
    # In-memory data: the stack's services are thrown away with the run.
    stack.start()
    try:
        yield Services(stack.mongo_uri, stack.redis_url)
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def sentry_sink() -> Iterator[SentrySink]:
    with SentrySink() as sink:
        yield sink


def mongo_uri_for(base_uri: str, db_name: str) -> str:
    """The same server with another database name in the path."""
    head, _, query = base_uri.partition("?")
    scheme, rest = head.split("://", 1)
    hosts = rest.split("/", 1)[0]
    uri = f"{scheme}://{hosts}/{db_name}"
    return f"{uri}?{query}" if query else uri


@pytest.fixture
def db_name() -> str:
    return f"printz_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(services, sentry_sink, db_name) -> dict:
    """The overrides every test app is built with; tests may add to them."""
    return {
        "PRINTZ_ENV": "test",
        "SECRET_KEY": "test-secret-key-not-for-production",
        "MONGO_URI": mongo_uri_for(services.mongo_uri, db_name),
        "REDIS_URL": services.redis_url,
        "SENTRY_DSN": sentry_sink.dsn,
        "SENTRY_TRACES_SAMPLE_RATE": 1.0,
    }


@pytest.fixture
def app(settings, services, sentry_sink, db_name):
    redis.Redis.from_url(services.redis_url).flushdb()
    application = create_app(settings)
    with application.app_context():
        create_indexes()
    sentry_sink.clear()
    yield application
    sentry_sdk.flush(timeout=2)
    client = pymongo.MongoClient(services.mongo_uri, serverSelectionTimeoutMS=3000)
    client.drop_database(db_name)
    client.close()


@pytest.fixture
def client(app):
    return app.test_client()


def new_email(prefix: str = "customer") -> str:
    return f"{prefix}{next(_emails)}-{uuid.uuid4().hex[:6]}@example.com"


def register(client, email: str | None = None, password: str = PASSWORD, name="Ada"):
    """Sign up through the API; the client is signed in afterwards."""
    response = client.post(
        "/api/auth/register",
        json={"email": email or new_email(), "password": password, "name": name},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def customer(app):
    """A signed-in customer's client, with ``.user`` holding the account."""
    signed_in = app.test_client()
    signed_in.user = register(signed_in)
    return signed_in


@pytest.fixture
def other_customer(app):
    signed_in = app.test_client()
    signed_in.user = register(signed_in, name="Grace")
    return signed_in


@pytest.fixture
def staff(app):
    """A signed-in staff member's client."""
    signed_in = app.test_client()
    email = new_email("staff")
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["printz", "create-staff", email],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    response = signed_in.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.get_json()
    signed_in.user = response.get_json()
    return signed_in


@pytest.fixture
def catalog(app) -> dict[str, int]:
    """The shop's catalogue, seeded from its data file as `flask printz seed` does."""
    from printz.cli import seed_data

    with app.app_context():
        return seed_data()
