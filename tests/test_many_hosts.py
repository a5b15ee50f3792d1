"""Two app instances share nothing but MongoDB and Redis, and it is enough.

Each instance is real gunicorn on its own port, as two hosts behind a load
balancer would be: a session made on one works on the other, login limits
count across both, and an order placed on one is visible on the other.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from printz.cli import seed_data
from tests.conftest import PASSWORD, new_email
from tests.support.gunicorn_server import GunicornServer

ORDER = {
    "items": [{"product": "flyers", "options": {"size": "a5"}, "quantity": 500}],
    "shipping_address": {
        "name": "Ada Lovelace",
        "line1": "1 Printing Lane",
        "city": "Lyon",
        "postal_code": "69001",
        "country": "FR",
    },
}


@pytest.fixture
def two_hosts(app, settings, tmp_path):
    with app.app_context():
        seed_data()
    shared = {k: v for k, v in settings.items() if k != "SENTRY_DSN"}
    with (
        GunicornServer(shared, tmp_path, workers=1, threads=4) as first,
        GunicornServer(shared, tmp_path, workers=1, threads=4) as second,
    ):
        yield first.url, second.url


def signed_up(host: str, email: str | None = None) -> requests.Session:
    """A browser that has just signed up on ``host``, carrying its cookie."""
    browser = requests.Session()
    answer = browser.post(
        host + "/api/auth/register",
        json={"email": email or new_email(), "password": PASSWORD, "name": "Ada"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return browser


def test_a_session_made_on_one_host_works_on_the_other(two_hosts):
    first, second = two_hosts
    email = new_email()

    browser = signed_up(first, email)
    me = browser.get(second + "/api/auth/me", timeout=10)

    assert me.status_code == 200
    assert me.json()["email"] == email


def test_logout_on_one_host_ends_the_session_on_the_other(two_hosts):
    first, second = two_hosts
    browser = signed_up(first)
    cookie = browser.cookies.get("printz_session")

    browser.post(second + "/api/auth/logout", timeout=10)

    stale = requests.get(
        first + "/api/auth/me", cookies={"printz_session": cookie}, timeout=10
    )
    assert stale.status_code == 401


def test_login_limits_count_across_hosts(two_hosts):
    first, second = two_hosts
    email = new_email()
    signed_up(first, email)
    wrong = {"email": email, "password": "not the password"}

    statuses = [
        requests.post(host + "/api/auth/login", json=wrong, timeout=10).status_code
        for host in (first, second, first, second, first, second)
    ]

    assert statuses == [401, 401, 401, 401, 401, 429]


def test_an_order_placed_on_one_host_is_visible_on_the_other(two_hosts):
    first, second = two_hosts
    browser = signed_up(first)
    key = str(uuid.uuid4())

    placed = browser.post(
        first + "/api/orders", json=ORDER, headers={"Idempotency-Key": key}, timeout=10
    )
    seen = browser.get(f"{second}/api/orders/{placed.json()['id']}", timeout=10)
    replay = browser.post(
        second + "/api/orders", json=ORDER, headers={"Idempotency-Key": key}, timeout=10
    )

    assert placed.status_code == 201
    assert seen.status_code == 200
    assert seen.json()["total_cents"] == placed.json()["total_cents"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == placed.json()["id"]
