"""What the on-call engineer finds in Sentry: the instrument step, request context,
error reports, the sentry-check command and the logs.

Everything goes through the real SDK to the suite's ingest endpoint; assertions
are on what arrives there.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
import warnings

import pymongo.errors
import pytest
import redis
import sentry_sdk
from flask import jsonify

from printz import create_app
from printz.config import ConfigError, load_settings
from printz.extensions import mongo, redis_store
from printz.instrument import sentry_options
from printz.observability import logs
from printz.observability.release import release_name
from printz.observability.sampling import traces_sampler
from tests.conftest import PASSWORD, register

log = logging.getLogger("printz.tests.observability")


def broken_after_request(response):
    if response.headers.get("X-Break-After-Request"):
        raise RuntimeError("an after_request hook broke")
    return response


def cache_route():
    client = redis_store.client
    client.get("catalog:products:page-1")
    client.set("catalog:products:page-1", "[]")
    client.get("catalog:products:page-1")
    return {"ok": True}


def mongo_down_route():
    raise pymongo.errors.ServerSelectionTimeoutError("no servers answered")


def break_after_route():
    response = jsonify({"ok": True})
    response.headers["X-Break-After-Request"] = "1"
    return response


@pytest.fixture
def app(app):
    app.add_url_rule("/api/test/cache", "test_cache", cache_route)
    app.add_url_rule("/api/test/break-after", "test_break_after", break_after_route)
    app.add_url_rule("/api/test/mongo-down", "test_mongo_down", mongo_down_route)
    app.after_request(broken_after_request)
    return app


def flushed(sentry_sink):
    sentry_sdk.flush(timeout=2)
    return sentry_sink


def transaction_named(sentry_sink, name: str) -> dict:
    return sentry_sink.wait_for(
        lambda sink: next(
            (t for t in sink.transactions() if t["transaction"] == name), None
        )
    )


def one_event(sentry_sink) -> dict:
    sentry_sink.wait_for(lambda sink: sink.events())
    [event] = flushed(sentry_sink).events()
    return event


# -- the instrument step ---------------------------------------------------------------


def test_options_leave_personal_data_off_and_the_scrubber_on(settings):
    options = sentry_options(load_settings(settings))

    assert "send_default_pii" not in options
    assert "data_collection" not in options
    assert options["stream_gen_ai_spans"] is False
    assert options["transport_queue_size"] == 1000


def test_starting_sentry_raises_no_deprecation_warning(settings):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_app(settings)

    assert not [
        w
        for w in caught
        if "sentry_sdk" in (w.filename or "") or "send_default_pii" in str(w.message)
    ]


def test_integrations_are_the_ones_printz_needs(settings):
    sentry_sdk.init(**sentry_options(load_settings(settings)))
    client = sentry_sdk.get_client()

    flask = client.get_integration("flask")
    redis = client.get_integration("redis")
    assert flask.transaction_style == "url"
    assert redis.cache_prefixes == ["catalog:"]
    assert client.get_integration("pymongo") is not None
    assert client.get_integration("logging") is not None
    assert client.get_integration("openai") is None


def test_trace_headers_go_to_no_one_by_default(settings):
    options = sentry_options(load_settings(settings))

    assert options["trace_propagation_targets"] == []


def test_trace_headers_go_to_printz_hosts_but_never_the_model_server(settings):
    settings.update(
        OPENAI_BASE_URL="http://127.0.0.1:8001/v1",
        SENTRY_TRACE_PROPAGATION_TARGETS="orders.printz.internal,127.0.0.1",
    )
    targets = sentry_options(load_settings(settings))["trace_propagation_targets"]

    def propagated(url: str) -> bool:
        return sentry_sdk.utils.match_regex_list(url, targets, substring_matching=True)

    assert propagated("https://orders.printz.internal/api/orders")
    assert not propagated("https://orders.printz.internal.evil.example/")
    assert not propagated("http://127.0.0.1:8001/v1/chat/completions")
    assert not propagated("https://api.openai.com/v1/chat/completions")


def test_profiling_is_off_unless_settings_turn_it_on(settings):
    off = sentry_options(load_settings(settings))
    settings.update(SENTRY_PROFILE_SESSION_SAMPLE_RATE=0.5)
    on = sentry_options(load_settings(settings))

    assert "profile_session_sample_rate" not in off
    assert on["profile_session_sample_rate"] == 0.5
    assert on["profile_lifecycle"] == "trace"


def test_release_is_the_setting_or_the_version_and_commit(settings):
    settings.update(SENTRY_RELEASE="printz@2026.12.1")

    assert sentry_options(load_settings(settings))["release"] == "printz@2026.12.1"
    assert release_name().startswith("printz@0.1.0")


def test_an_app_without_a_dsn_sends_nothing(settings, sentry_sink):
    create_app(settings)
    settings.update(SENTRY_DSN=None)
    app = create_app(settings)
    sentry_sink.clear()

    app.test_client().get("/debug-sentry")
    sentry_sdk.flush(timeout=1)

    assert sentry_sink.envelopes == []


def test_a_bad_price_table_stops_start_up_naming_the_setting(settings):
    settings.update(PRINTZ_MODEL_PRICES='{"gpt-4o-mini": {"input": 1}}')

    with pytest.raises(ConfigError, match=r"PRINTZ_MODEL_PRICES.*input and output"):
        create_app(settings)


# -- sampling --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parent", "rate"),
    [
        ("/healthz", None, 0.0),
        ("/readyz", True, 0.0),
        ("/api/chat", None, 1.0),
        ("/api/chat", False, 0.0),
        ("/api/products", True, 1.0),
        ("/api/products", False, 0.0),
        ("/api/products", None, 0.25),
    ],
)
def test_sampling_decides_from_the_path_and_the_caller(path, parent, rate):
    sample = traces_sampler(0.25)

    assert sample({"wsgi_environ": {"PATH_INFO": path}, "parent_sampled": parent}) == (
        rate
    )


def test_health_checks_are_never_traced(client, sentry_sink):
    client.get("/healthz")
    client.get("/readyz")
    client.get("/api/auth/me")

    transaction_named(sentry_sink, "/api/auth/me")
    names = [t["transaction"] for t in flushed(sentry_sink).transactions()]
    assert names == ["/api/auth/me"]


def test_an_incoming_trace_decision_is_respected(settings, sentry_sink):
    settings.update(SENTRY_TRACES_SAMPLE_RATE=0.0)
    app = create_app(settings)
    app.add_url_rule("/api/chat/test-ping", "test_ping", lambda: {"pong": True})
    client = app.test_client()
    sentry_sink.clear()
    trace_id = uuid.uuid4().hex

    def parent(sampled: int) -> dict:
        return {"sentry-trace": f"{trace_id}-{uuid.uuid4().hex[:16]}-{sampled}"}

    client.get("/api/auth/me")
    client.get("/api/auth/me", headers=parent(1))
    client.get("/api/chat/test-ping", headers=parent(0))
    client.get("/api/chat/test-ping")

    sentry_sink.wait_for(lambda sink: len(sink.transactions()) >= 2)
    traced = [
        (t["transaction"], t["contexts"]["trace"]["trace_id"])
        for t in flushed(sentry_sink).transactions()
    ]
    assert ("/api/auth/me", trace_id) in traced
    assert [name for name, _ in traced].count("/api/chat/test-ping") == 1
    assert len(traced) == 2


# -- context on every request ----------------------------------------------------------


def test_a_transaction_is_named_by_route_and_tagged(customer, sentry_sink):
    customer.get("/api/auth/me", headers={"X-Request-ID": "req-context-1"})

    transaction = transaction_named(sentry_sink, "/api/auth/me")
    assert transaction["tags"]["request_id"] == "req-context-1"
    assert transaction["tags"]["http.route"] == "/api/auth/me"
    assert transaction["tags"]["http.method"] == "GET"
    assert transaction["tags"]["plugin"] == "auth"
    assert transaction["tags"]["user.role"] == "customer"
    assert transaction["user"] == {"id": customer.user["id"], "role": "customer"}


def test_an_error_carries_user_request_tags_and_breadcrumbs(customer, sentry_sink):
    customer.get("/api/auth/me", headers={"X-Request-ID": "req-before-1"})
    response = customer.post(
        "/debug-sentry?page=2", headers={"X-Request-ID": "req-error-1"}
    )

    event = one_event(sentry_sink)
    assert response.get_json()["error"]["event_id"] == event["event_id"]
    assert response.headers["X-Request-ID"] == "req-error-1"
    assert event["user"] == {"id": customer.user["id"], "role": "customer"}
    assert event["tags"]["request_id"] == "req-error-1"
    assert event["tags"]["plugin"] == "core"
    assert event["request"]["method"] == "POST"
    assert event["request"]["url"].endswith("/debug-sentry")
    assert event["request"]["query_string"] == "page=2"
    crumbs = event["breadcrumbs"]["values"]
    requests_seen = [c for c in crumbs if c.get("category") == "request"]
    assert requests_seen[-1]["message"] == "POST /debug-sentry"
    assert requests_seen[-1]["data"]["request_id"] == "req-error-1"
    # Each request starts with its own breadcrumbs.
    assert not [c for c in requests_seen if c["data"]["request_id"] == "req-before-1"]


def test_personal_data_stays_off_by_default(customer, sentry_sink):
    customer.get("/debug-sentry", headers={"X-Forwarded-For": "203.0.113.7"})

    event = one_event(sentry_sink)
    assert "email" not in event["user"]
    assert "ip_address" not in event["user"]
    assert "cookies" not in event["request"]
    assert "REMOTE_ADDR" not in event["request"].get("env", {})
    assert "203.0.113.7" not in sentry_sink.raw_text()
    assert customer.user["email"] not in sentry_sink.raw_text()


def test_email_is_sent_only_when_settings_allow_it(settings, sentry_sink):
    settings.update(SENTRY_SEND_USER_EMAIL=True)
    app = create_app(settings)
    browser = app.test_client()
    email = f"allowed-{uuid.uuid4().hex[:8]}@example.com"
    browser.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "A"}
    )
    sentry_sink.clear()

    browser.get("/debug-sentry")

    assert one_event(sentry_sink)["user"]["email"] == email


def test_a_customer_of_an_app_without_sentry_is_in_no_later_event(
    settings, sentry_sink
):
    without_sentry = dict(settings, SENTRY_DSN=None)
    register(create_app(without_sentry).test_client())  # same thread, no fork
    browser = create_app(settings).test_client()
    sentry_sink.clear()

    browser.get("/debug-sentry")

    assert not one_event(sentry_sink).get("user")


def test_logout_clears_the_user(customer, sentry_sink):
    customer.post("/api/auth/logout", headers={"X-Request-ID": "req-logout-1"})
    customer.get("/debug-sentry", headers={"X-Request-ID": "req-after-logout"})

    logout = transaction_named(sentry_sink, "/api/auth/logout")
    event = one_event(sentry_sink)
    assert "user" not in logout or not logout["user"]
    assert "user.role" not in logout["tags"]
    assert not event.get("user")


def test_cache_calls_on_catalogue_keys_are_cache_spans(client, sentry_sink):
    client.get("/api/test/cache")

    transaction = transaction_named(sentry_sink, "/api/test/cache")
    cache = [s for s in transaction["spans"] if s["op"].startswith("cache.")]
    assert [(s["op"], s["data"].get("cache.hit")) for s in cache] == [
        ("cache.get", False),
        ("cache.put", None),
        ("cache.get", True),
    ]


def test_mongo_queries_are_spans_of_the_request(customer, sentry_sink):
    customer.get("/api/auth/me")

    transaction = transaction_named(sentry_sink, "/api/auth/me")
    queries = [s for s in transaction["spans"] if s["op"] == "db"]
    assert queries
    assert queries[0]["data"]["db.system"] == "mongodb"


# -- errors ----------------------------------------------------------------------------


def test_an_unhandled_error_is_reported_by_printz_alone(client, sentry_sink):
    # The Flask integration reports only what reaches Flask's last resort; the
    # Exception error handler keeps view errors from getting there.
    response = client.get("/debug-sentry")

    event = one_event(sentry_sink)
    assert response.get_json()["error"]["event_id"] == event["event_id"]
    assert event["exception"]["values"][-1]["mechanism"]["type"] != "flask"


def test_client_errors_are_never_reported(client, sentry_sink):
    email = f"taken-{uuid.uuid4().hex[:8]}@example.com"
    client.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "A"}
    )
    answers = [
        client.get("/api/nothing-here").status_code,
        client.post(
            "/api/auth/register",
            json={"email": email, "password": PASSWORD, "name": "A"},
        ).status_code,
        client.post("/api/auth/register", json={"email": "x"}).status_code,
        client.get("/api/auth/me").status_code,
        client.delete("/api/auth/me").status_code,
    ]
    for _ in range(6):
        answers.append(
            client.post(
                "/api/auth/login", json={"email": email, "password": "wrong"}
            ).status_code
        )

    assert {404, 409, 422, 401, 405, 429} <= set(answers)
    assert flushed(sentry_sink).events() == []


def test_a_mongo_outage_is_a_503_grouped_as_one_issue(settings, sentry_sink):
    settings.update(
        MONGO_URI="mongodb://127.0.0.1:9/printz?directConnection=true",
        MONGO_TIMEOUT_MS=30,
    )
    client = create_app(settings).test_client()
    sentry_sink.clear()

    answers = [
        client.post(
            "/api/auth/login",
            json={"email": f"someone{n}@example.com", "password": PASSWORD},
        )
        for n in range(12)
    ]

    assert {answer.status_code for answer in answers} == {503}
    body = answers[0].get_json()["error"]
    assert body["code"] == "dependency_unavailable"
    assert body["dependency"] == "mongo"
    events = sentry_sink.wait_for(lambda sink: len(sink.events()) >= 12 and sink)
    fingerprints = {tuple(event["fingerprint"]) for event in events.events()}
    assert fingerprints == {("dependency-unavailable", "mongo")}
    assert {event["event_id"] for event in events.events()} == {
        answer.get_json()["error"]["event_id"] for answer in answers
    }


def test_a_thousand_failing_requests_make_one_issue(client, sentry_sink):
    answers = [client.get("/api/test/mongo-down") for _ in range(1000)]

    assert {answer.status_code for answer in answers} == {503}
    assert len({answer.get_json()["error"]["event_id"] for answer in answers}) == 1000
    sentry_sdk.flush(timeout=5)
    # The transport queue is bounded: during a flood some events are dropped
    # rather than held; every one that arrives is in the same issue.
    events = sentry_sink.events()
    assert len(events) >= 50
    assert {tuple(event["fingerprint"]) for event in events} == {
        ("dependency-unavailable", "mongo")
    }


def test_a_redis_outage_is_a_503_grouped_as_one_issue(settings, sentry_sink):
    settings.update(REDIS_URL="redis://127.0.0.1:9/0", REDIS_TIMEOUT_S=0.2)
    app = create_app(settings)
    app.add_url_rule("/api/test/cache", "test_cache", cache_route)
    client = app.test_client()
    sentry_sink.clear()

    answers = [client.get("/api/test/cache") for _ in range(3)]

    assert {answer.status_code for answer in answers} == {503}
    assert answers[0].get_json()["error"]["dependency"] == "redis"
    events = sentry_sink.wait_for(lambda sink: len(sink.events()) >= 3 and sink)
    assert len(flushed(events).events()) == 3
    fingerprints = {tuple(event["fingerprint"]) for event in events.events()}
    assert fingerprints == {("dependency-unavailable", "redis")}


def test_a_failing_redis_command_closes_its_spans(app, sentry_sink):
    dead = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)

    with app.app_context():
        transaction = sentry_sdk.start_transaction(name="redis down", sampled=True)
        with transaction, pytest.raises(redis.exceptions.ConnectionError):
            dead.get("catalog:products:page-1")
        still_active = sentry_sdk.get_current_span()

    assert still_active is None
    sent = transaction_named(sentry_sink, "redis down")
    assert [(span["op"], span["status"]) for span in sent["spans"]] == [
        ("cache.get", "internal_error"),
        ("db.redis", "internal_error"),
    ]


def test_an_untraced_request_makes_no_redis_spans_but_keeps_the_breadcrumbs(
    settings, sentry_sink, monkeypatch
):
    settings.update(SENTRY_TRACES_SAMPLE_RATE=0.0)
    app = create_app(settings)
    client = app.test_client()
    register(client)
    sentry_sink.clear()
    started = []
    start_span = sentry_sdk.start_span

    def counting_start_span(*args, **kwargs):
        started.append(kwargs.get("op"))
        return start_span(*args, **kwargs)

    monkeypatch.setattr(sentry_sdk, "start_span", counting_start_span)
    client.get("/debug-sentry")
    with app.app_context(), sentry_sdk.start_transaction(name="on", sampled=True):
        redis_store.client.get("catalog:products:page-1")

    redis_spans = [op for op in started if op in ("db.redis", "cache.get")]
    assert redis_spans == ["cache.get", "db.redis"]  # the traced command's only
    event = one_event(sentry_sink)
    crumbs = [c for c in event["breadcrumbs"]["values"] if c["category"] == "redis"]
    assert crumbs, "the session read is a breadcrumb"
    assert crumbs[-1]["message"] == "GET 'session:[Filtered]'"
    assert crumbs[-1]["data"]["redis.command"] == "GET"
    sent = [t["transaction"] for t in flushed(sentry_sink).transactions()]
    assert sent == ["on"]


def test_an_untraced_mongo_command_makes_no_span_but_the_same_breadcrumb(
    settings, sentry_sink, monkeypatch
):
    settings.update(SENTRY_TRACES_SAMPLE_RATE=0.0)
    app = create_app(settings)
    sentry_sink.clear()
    started = []
    start_span = sentry_sdk.start_span

    def counting_start_span(*args, **kwargs):
        if kwargs.get("op") == "db":
            started.append(kwargs["op"])
        return start_span(*args, **kwargs)

    monkeypatch.setattr(sentry_sdk, "start_span", counting_start_span)

    def breadcrumbs_of_a_find(sampled: bool) -> list[dict]:
        message = f"after the find, sampled={sampled}"
        with (
            app.app_context(),
            sentry_sdk.isolation_scope(),
            sentry_sdk.start_transaction(name="find", sampled=sampled),
        ):
            sentry_sdk.get_isolation_scope().clear_breadcrumbs()
            mongo.db.users.find_one({"email": "ada@example.com"}, {"name": 1})
            sentry_sdk.capture_message(message)
        [event] = [e for e in flushed(sentry_sink).events() if e["message"] == message]
        crumbs = [c for c in event["breadcrumbs"]["values"] if c["category"] == "query"]
        return [{k: v for k, v in c.items() if k != "timestamp"} for c in crumbs]

    untraced = breadcrumbs_of_a_find(sampled=False)
    assert started == []
    traced = breadcrumbs_of_a_find(sampled=True)  # the SDK's own listener

    assert started == ["db"]
    assert untraced == traced
    [crumb] = untraced
    assert crumb["data"]["db.mongodb.collection"] == "users"
    assert "ada@example.com" not in json.dumps(crumb)


def test_an_error_after_the_view_is_reported_once_with_its_id(app, sentry_sink):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    response = app.test_client().get("/api/test/break-after")

    assert response.status_code == 500
    event = one_event(sentry_sink)
    assert response.get_json()["error"]["event_id"] == event["event_id"]
    assert event["exception"]["values"][-1]["value"] == "an after_request hook broke"


# -- flask printz sentry-check ---------------------------------------------------------


def test_sentry_check_reports_what_the_dsn_accepted(app, sentry_sink):
    result = app.test_cli_runner().invoke(args=["printz", "sentry-check"])

    assert result.exit_code == 0, result.output
    event = one_event(sentry_sink)
    [transaction] = sentry_sink.transactions()
    assert f"error        {event['event_id']}  accepted (HTTP 200)" in result.output
    assert (
        f"transaction  {transaction['event_id']}  accepted (HTTP 200)" in result.output
    )
    assert transaction["transaction"] == "printz sentry-check"


def test_sentry_check_says_when_the_dsn_refuses(app, sentry_sink):
    sentry_sink.mode = "error_500"
    try:
        result = app.test_cli_runner().invoke(args=["printz", "sentry-check"])
    finally:
        sentry_sink.mode = "ok"

    assert result.exit_code == 1
    assert "rejected (HTTP 500" in result.output
    assert "Sentry did not accept everything" in result.output


def test_sentry_check_without_a_dsn_says_so(settings):
    settings.update(SENTRY_DSN=None)
    app = create_app(settings)

    result = app.test_cli_runner().invoke(args=["printz", "sentry-check"])

    assert result.exit_code == 1
    assert "SENTRY_DSN is not set" in result.output


# -- logs ------------------------------------------------------------------------------


@pytest.fixture
def log_output():
    """What the printz handler writes, captured for the duration of a test."""
    [handler] = [
        h for h in logging.getLogger("printz").handlers if getattr(h, "printz", 0)
    ]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_console_lines_carry_request_and_user(customer, log_output):
    customer.post("/api/auth/logout", headers={"X-Request-ID": "req-console-1"})
    customer.get("/debug-sentry", headers={"X-Request-ID": "req-console-2"})

    lines = log_output.getvalue().splitlines()
    [line] = [line for line in lines if "req=req-console-2" in line]
    assert "ERROR" in line
    assert "user=-" in line


def test_production_logs_are_json_lines_without_secrets(settings, log_output):
    settings.update(PRINTZ_ENV="production", SECRET_KEY="a-real-production-secret")
    app = create_app(settings)

    with app.test_request_context(headers={"X-Request-ID": "req-json-1"}):
        log.warning("card 4111 1111 1111 1111 refused, token=tok_live_123456")

    records = [json.loads(line) for line in log_output.getvalue().splitlines()]
    [record] = [r for r in records if r["request_id"] == "req-json-1"]
    assert record["level"] == "WARNING"
    assert record["logger"] == "printz.tests.observability"
    assert record["message"] == "card [Filtered] refused, token=[Filtered]"
    assert {"time", "user_id", "trace_id"} <= record.keys()


def test_records_are_stamped_with_request_and_user(customer, sentry_sink):
    customer.get("/debug-sentry", headers={"X-Request-ID": "req-stamp-1"})
    sentry_sdk.flush(timeout=2)

    [record] = [
        r
        for r in sentry_sink.logs()
        if r["attributes"].get("request_id", {}).get("value") == "req-stamp-1"
    ]
    assert record["attributes"]["user_id"]["value"] == customer.user["id"]
    assert record["level"] == "error"


def test_stamping_is_installed_once():
    logs.stamp_records()
    factory = logging.getLogRecordFactory()
    logs.stamp_records()

    assert logging.getLogRecordFactory() is factory
