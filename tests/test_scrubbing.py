"""No customer secret leaves the process, wherever a client puts it.

Secrets go in every place a client controls (nested JSON, the query string,
headers, cookies) on requests that fail, succeed and are refused, and into a log
line and an exception message; then every byte Sentry received is searched for
each of them and for the session id the server handed out.
"""

from __future__ import annotations

import copy
import logging
import re
import time

import pytest
import sentry_sdk
from flask import request

from printz import create_app
from printz.extensions import mongo
from printz.observability import scrub
from tests.conftest import PASSWORD

log = logging.getLogger("printz.tests.scrubbing")

NEW_PASSWORD = "Sup3r-Secret-Passw0rd!"
TOKEN = "tok_live_7f3a9c1e5bq"
API_KEY = "ak_test_c0ffee1234zz"
CARD = "4111111111111111"
CARD_SPACED = "4111 1111 1111 1111"
CVV = "8412"
PROMPT = "please find my order for Zanzibar Quokka Prints"


def checkout():
    body = request.get_json()
    log.info("checkout token=%s card %s cvv=%s", TOKEN, CARD, body["payment"]["cvv"])
    raise ValueError(f"payment failed for card {CARD} with password={NEW_PASSWORD}")


def aggregate():
    pipeline = [
        {"$match": {"status": "paid"}},
        {
            "$lookup": {
                "from": "users",
                "pipeline": [{"$match": {"api_key": API_KEY}}],
                "as": "owner",
            }
        },
        {"$project": {"card": {"$literal": CARD}}},
    ]
    return {"count": len(list(mongo.db.orders.aggregate(pipeline)))}


def chat_failure():
    prompt = request.get_json()["messages"][0]["text"]
    raise RuntimeError(f"the model failed after {len(prompt)} characters")


@pytest.fixture
def app(app):
    app.add_url_rule("/api/test/checkout", "checkout", checkout, methods=["POST"])
    app.add_url_rule("/api/test/aggregate", "aggregate", aggregate)
    app.add_url_rule(
        "/api/chat/test-failure", "chat_failure", chat_failure, methods=["POST"]
    )
    return app


def session_id(client) -> str:
    return client.get_cookie("printz_session").value


def secret_body(email: str, password: str) -> dict:
    return {
        "email": email,
        "password": password,
        "profile": {
            "payment": {
                "card_number": CARD,
                "cvv": CVV,
                "card": {"number": CARD, "note": f"my card is {CARD_SPACED}"},
            },
            "apiKey": API_KEY,
            "tokens": [TOKEN],
        },
        "auth": {"bearer": TOKEN},
        "payment": {"cvv": CVV},
    }


def secret_query() -> str:
    return f"token={TOKEN}&api_key={API_KEY}&card={CARD}&page=2"


def secret_headers(sid: str) -> dict:
    return {
        "Authorization": f"Bearer {TOKEN}",
        "X-Api-Key": API_KEY,
        "X-Auth-Token": TOKEN,
        "X-Session-Id": sid,
        "X-Card-Number": CARD,
        "X-Request-ID": CARD,
    }


def send_secrets_everywhere(customer) -> list[str]:
    """Every kind of request, each carrying every secret; the session ids seen."""
    seen = [session_id(customer)]
    customer.set_cookie("remember_token", TOKEN)
    customer.set_cookie("api_key", API_KEY)
    email = customer.user["email"]

    refused = customer.post(
        f"/api/auth/login?{secret_query()}",
        json=secret_body(email, NEW_PASSWORD),
        headers=secret_headers(seen[0]),
    )
    succeeded = customer.post(
        f"/api/auth/login?{secret_query()}",
        json=secret_body(email, PASSWORD),
        headers=secret_headers(seen[0]),
    )
    seen.append(session_id(customer))
    failed = customer.post(
        f"/debug-sentry?{secret_query()}",
        json=secret_body(email, NEW_PASSWORD),
        headers=secret_headers(seen[-1]),
    )
    logged = customer.post(
        f"/api/test/checkout?{secret_query()}",
        json=secret_body(email, NEW_PASSWORD),
        headers=secret_headers(seen[-1]),
    )
    aggregated = customer.get(
        f"/api/test/aggregate?{secret_query()}", headers=secret_headers(seen[-1])
    )

    assert [refused.status_code, succeeded.status_code] == [401, 200]
    assert [failed.status_code, logged.status_code] == [500, 500]
    assert aggregated.status_code == 200
    return seen


def everything_sent(sentry_sink) -> str:
    sentry_sink.wait_for(lambda sink: len(sink.events()) >= 2)
    sentry_sdk.flush(timeout=2)
    return sentry_sink.raw_text()


def test_no_secret_reaches_sentry_from_anywhere_a_client_puts_one(
    customer, sentry_sink
):
    session_ids = send_secrets_everywhere(customer)

    sent = everything_sent(sentry_sink)
    for secret in [PASSWORD, NEW_PASSWORD, TOKEN, API_KEY, CARD, CARD_SPACED]:
        assert secret not in sent, f"{secret!r} reached Sentry"
    assert not re.search(rf"(?<![0-9A-Za-z]){CVV}(?![0-9A-Za-z])", sent)
    for sid in session_ids:
        assert sid not in sent, "a session id reached Sentry"
    assert customer.user["email"] not in sent


def test_what_is_scrubbed_is_still_sent_for_the_operator(customer, sentry_sink):
    send_secrets_everywhere(customer)
    everything_sent(sentry_sink)

    logins = [
        t for t in sentry_sink.transactions() if t["transaction"] == "/api/auth/login"
    ]
    data = logins[-1]["request"]["data"]
    assert data["password"] == "[Filtered]"
    assert data["profile"]["payment"] == {
        "card_number": "[Filtered]",
        "cvv": "[Filtered]",
        "card": "[Filtered]",
    }
    assert logins[-1]["request"]["query_string"] == (
        "token=[Filtered]&api_key=[Filtered]&card=[Filtered]&page=2"
    )
    redis_spans = [
        span["description"]
        for span in logins[-1]["spans"]
        if span["op"] == "db.redis" and "session:" in span["description"]
    ]
    assert redis_spans and all("session:[Filtered]" in d for d in redis_spans)
    messages = [e["exception"]["values"][-1]["value"] for e in sentry_sink.events()]
    assert "payment failed for card [Filtered] with password=[Filtered]" in messages
    assert any(
        record["body"] == "checkout token=[Filtered] card [Filtered] cvv=[Filtered]"
        for record in sentry_sink.logs()
    )


def test_mongo_commands_keep_their_shape_and_lose_their_values(customer, sentry_sink):
    customer.get("/api/test/aggregate")

    transaction = sentry_sink.wait_for(
        lambda sink: next(
            (
                t
                for t in sink.transactions()
                if t["transaction"] == "/api/test/aggregate"
            ),
            None,
        )
    )
    [query] = [s for s in transaction["spans"] if '"aggregate"' in s["description"]]
    assert (
        '"$lookup":{"from":"?","pipeline":[{"$match":{"api_key":"?"}}]'
        in (query["description"])
    )
    assert API_KEY not in sentry_sink.raw_text()


def test_chat_prompts_stay_out_unless_settings_allow_them(customer, sentry_sink):
    body = {"id": "c1", "messages": [{"role": "user", "text": PROMPT}]}
    customer.post("/api/chat/test-failure", json=body)

    assert "Zanzibar" not in everything_sent_once(sentry_sink)


def test_chat_prompts_are_sent_when_settings_allow_them(settings, sentry_sink):
    settings.update(SENTRY_SEND_AI_CONTENT=True)
    app = create_app(settings)
    app.add_url_rule(
        "/api/chat/test-failure", "chat_failure", chat_failure, methods=["POST"]
    )
    sentry_sink.clear()

    body = {"id": "c1", "messages": [{"role": "user", "text": PROMPT}]}
    app.test_client().post("/api/chat/test-failure", json=body)

    assert "Zanzibar" in everything_sent_once(sentry_sink)


def everything_sent_once(sentry_sink) -> str:
    sentry_sink.wait_for(lambda sink: sink.events())
    sentry_sdk.flush(timeout=2)
    return sentry_sink.raw_text()


# -- the scrubber on its own ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SETEX 'session:3fa9c1e5b7d2' 1209600", "SETEX 'session:[Filtered]' 1209600"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: [Filtered] [Filtered]"),
        ("/pay?card=4111111111111111&page=2", "/pay?card=[Filtered]&page=2"),
        ('{"password": "hunter2", "n": 1}', '{"password": "[Filtered]", "n": 1}'),
        ("LoginBody(password='hunter2')", "LoginBody(password='[Filtered]')"),
        (
            "mongodb://printz:s3cret@db:27017/x",
            "mongodb://printz:[Filtered]@db:27017/x",
        ),
        ("card 4111-1111-1111-1111 ok", "card [Filtered] ok"),
        ("key sk-proj-abcdefghijklmnop", "key [Filtered]"),
        ("mail ada@example.com", "mail [Filtered]"),
        # Not secrets: counts, ids, times and numbers that fail the Luhn check.
        ("input_tokens=120 output_tokens=40", "input_tokens=120 output_tokens=40"),
        (
            "trace 4bf92f3577b34da6a3ce929d0e0e4736",
            "trace 4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ("order 4111111111111112", "order 4111111111111112"),
        ("2026-12-03T17:05:47.432123Z", "2026-12-03T17:05:47.432123Z"),
        ("PRINTZ_SESSION_LIFETIME_S=1209600", "PRINTZ_SESSION_LIFETIME_S=1209600"),
        # A pair right after a quoted value, and one inside a longer word.
        ('a="x"token=abc', 'a="x"token=[Filtered]'),
        ("mysid=abc123 ok", "mysid=[Filtered] ok"),
    ],
)
def test_secrets_are_found_by_their_shape_in_text(text, expected):
    assert scrub.scrub_text(text) == expected


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("X-Api-Key", True),
        ("apiKey", True),
        ("access_token", True),
        ("refreshToken", True),
        ("HTTP_AUTHORIZATION", True),
        ("session_id", True),
        ("cardNumber", True),
        ("cvv", True),
        ("input_tokens", False),
        ("gen_ai.response.time_to_first_token", False),
        ("span_id", False),
        ("cache.key", False),
        ("user.role", False),
    ],
)
def test_keys_that_name_secrets(key, secret):
    assert scrub.is_secret_key(key) is secret


def test_numbers_are_kept_under_plural_secret_words_but_text_is_not():
    event = {"extra": {"tokens": ["tok_abc"], "max_tokens": 512, "keys": 3}}

    assert scrub.before_send(event, {})["extra"] == {
        "tokens": "[Filtered]",
        "max_tokens": 512,
        "keys": 3,
    }


def test_log_arguments_that_were_secret_in_the_message_are_masked():
    record = {
        "body": "login token=tok_abc123 for bob",
        "attributes": {
            "sentry.message.parameter.0": "tok_abc123",
            "sentry.message.parameter.1": "bob",
        },
    }

    scrubbed = scrub.before_send_log(record, {})

    assert scrubbed["attributes"]["sentry.message.parameter.0"] == "[Filtered]"
    assert scrubbed["attributes"]["sentry.message.parameter.1"] == "bob"


def test_a_breadcrumb_of_a_redis_session_key_loses_the_id_when_an_event_carries_it():
    crumb = {"category": "redis", "message": "GET 'session:3fa9c1e5b7d2'", "data": {}}
    event = {"message": "boom", "breadcrumbs": {"values": [crumb]}}

    scrubbed = scrub.before_send(event, {})

    [carried] = scrubbed["breadcrumbs"]["values"]
    assert carried["message"] == "GET 'session:[Filtered]'"


def test_a_long_word_is_scrubbed_in_linear_time():
    # Every transaction carries ids and timestamps the memo has never seen; the
    # key=value pattern once retried a run of word characters from each of its
    # characters, a second for this text.
    text = "id 1234" + "f" * 3000 + "=1"

    started = time.perf_counter()
    assert scrub.scrub_text(text) == text
    assert time.perf_counter() - started < 0.1


def test_scrubbing_a_thousand_span_transaction_is_cheap():
    spans = []
    for number in range(1000):
        spans.append(
            {
                "op": "db",
                "description": '{"find": "products", "filter": {"slug": "%s"}}',
                "span_id": f"{number:016x}",
                "data": {"db.system": "mongodb", "db.name": "printz", "thread.id": "1"},
                "tags": {"db.operation": "find"},
            }
        )
        spans.append(
            {
                "op": "db.redis",
                "description": f"GET 'catalog:products:{number}'",
                "data": {"redis.key": f"catalog:products:{number}", "cache.hit": True},
                "tags": {"redis.command": "GET"},
            }
        )
    event = {"type": "transaction", "transaction": "/api/products", "spans": spans}

    copies = [copy.deepcopy(event) for _ in range(5)]
    started = time.perf_counter()
    for each in copies:
        scrub.before_send_transaction(each, {})
    took = (time.perf_counter() - started) / len(copies)

    assert took < 0.1, f"{took * 1000:.1f} ms for 2000 spans"
