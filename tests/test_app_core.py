"""The app's shared behaviour: health, errors, request ids, OpenAPI, Sentry."""

from __future__ import annotations

import io
import json

import pytest

from printz import create_app
from printz.config import ConfigError
from tests.conftest import PASSWORD


def test_healthz_answers_without_touching_dependencies(settings):
    settings.update(
        MONGO_URI="mongodb://127.0.0.1:9/x", REDIS_URL="redis://127.0.0.1:9"
    )
    app = create_app(settings)

    response = app.test_client().get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ready_when_mongo_and_redis_answer(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_readyz_names_what_is_down(settings):
    settings.update(
        MONGO_URI="mongodb://127.0.0.1:9/x?directConnection=true",
        MONGO_TIMEOUT_MS=300,
        REDIS_URL="redis://127.0.0.1:9/0",
        REDIS_TIMEOUT_S=0.3,
    )
    app = create_app(settings)

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["failed"] == ["mongo", "redis"]


def test_every_response_carries_a_request_id(client):
    made = client.get("/healthz").headers["X-Request-ID"]
    kept = client.get("/healthz", headers={"X-Request-ID": "lb-1234abcd"})
    insane = client.get("/healthz", headers={"X-Request-ID": "<script>" * 3})

    assert len(made) == 32
    assert kept.headers["X-Request-ID"] == "lb-1234abcd"
    assert insane.headers["X-Request-ID"] != "<script>" * 3


def test_unknown_route_is_a_json_404_carrying_the_request_id(client):
    response = client.get("/api/nothing-here", headers={"X-Request-ID": "abcd1234"})

    assert response.status_code == 404
    assert response.get_json() == {
        "error": {
            "code": "not_found",
            "message": "Not found.",
            "request_id": "abcd1234",
        }
    }


def test_wrong_method_is_a_json_405(client):
    response = client.delete("/api/auth/me")

    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_malformed_json_is_a_400(client):
    response = client.post(
        "/api/auth/login", data="{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"


def test_json_nested_too_deeply_to_read_is_a_400_not_a_500(client):
    deep = "[" * 100_000 + "]" * 100_000

    response = client.post(
        "/api/auth/login", data=deep, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"


def test_a_lone_surrogate_in_a_body_is_a_400_and_nothing_is_stored(client):
    email = "lone-surrogate@example.com"
    body = json.dumps({"email": email, "password": PASSWORD, "name": "Ada LONE"})
    body = body.replace("LONE", "\\ud800")

    response = client.post(
        "/api/auth/register", data=body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"
    login = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401


def test_an_escaped_surrogate_pair_is_text(client):
    body = json.dumps({"email": "pair@example.com", "password": PASSWORD, "name": "P"})
    body = body.replace('"P"', '"Ada \\ud83d\\ude00"')

    response = client.post(
        "/api/auth/register", data=body, content_type="application/json"
    )

    assert response.status_code == 201
    assert response.get_json()["name"] == "Ada \U0001f600"


def test_body_over_one_mebibyte_is_a_413(client):
    huge = '{"email": "' + "a" * (1024 * 1024) + '"}'

    response = client.post(
        "/api/auth/login", data=huge, content_type="application/json"
    )

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def chunked_post(client, path: str, body: bytes):
    """A body of unknown length, as a chunked request reaches the app."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_body_over_one_mebibyte_is_a_413_not_a_cut_off_400(client):
    huge = ('{"email": "' + "a" * (1024 * 1024) + '"}').encode()

    response = chunked_post(client, "/api/auth/login", huge)

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_a_chunked_body_under_the_limit_is_read_whole(client):
    body = json.dumps({"email": "x" * 900_000, "password": PASSWORD}).encode()

    response = chunked_post(client, "/api/auth/login", body)

    assert response.status_code == 422
    assert "email" in response.get_json()["error"]["fields"]


def test_unhandled_error_is_reported_once_with_its_event_id(client, sentry_sink):
    response = client.get("/debug-sentry", headers={"X-Request-ID": "req-debug-1"})

    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error["code"] == "internal_error"
    assert error["request_id"] == "req-debug-1"
    events = sentry_sink.wait_for(lambda sink: sink.events())
    assert len(events) == 1
    assert events[0]["event_id"] == error["event_id"]
    assert events[0]["tags"]["request_id"] == "req-debug-1"
    assert events[0]["exception"]["values"][-1]["type"] == "SentryCheckError"


def test_debug_route_accepts_any_method(client):
    assert client.post("/debug-sentry").status_code == 500
    assert client.delete("/debug-sentry").status_code == 500


def test_debug_route_is_absent_in_production(settings):
    settings.update(PRINTZ_ENV="production", SECRET_KEY="a-real-production-secret")
    app = create_app(settings)

    assert app.test_client().get("/debug-sentry").status_code == 404


def test_client_errors_are_not_reported(client, sentry_sink):
    import sentry_sdk

    client.get("/api/nothing-here")
    client.post("/api/auth/login", json={"email": 1})
    client.get("/api/auth/me")
    client.post("/api/auth/login", data="{", content_type="application/json")
    sentry_sdk.flush(timeout=2)

    assert sentry_sink.events() == []


def test_production_refuses_to_start_without_a_secret_key(settings):
    settings.update(PRINTZ_ENV="production")
    settings.pop("SECRET_KEY")

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(settings)


def test_a_bad_setting_names_the_key_and_what_is_allowed(settings):
    settings.update(PRINTZ_ENV="staging")

    with pytest.raises(ConfigError, match=r"PRINTZ_ENV.*development, test, production"):
        create_app(settings)


def test_environment_variables_override_defaults(monkeypatch, settings):
    from printz.config import load_settings

    monkeypatch.setenv("PRINTZ_MONGO_TIMEOUT_MS", "1234")
    monkeypatch.setenv("PRINTZ_PLUGINS", "auth, catalog")
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.5")

    values = load_settings()

    assert values["MONGO_TIMEOUT_MS"] == 1234
    assert values["PRINTZ_PLUGINS"] == ("auth", "catalog")
    assert values["SENTRY_TRACES_SAMPLE_RATE"] == 0.5


def test_a_number_setting_given_text_names_the_key(monkeypatch):
    from printz.config import load_settings

    monkeypatch.setenv("PRINTZ_PORT", "five thousand")

    with pytest.raises(ConfigError, match="PORT='five thousand': must be a whole"):
        load_settings()


@pytest.mark.parametrize("text", ["1_0", "\u0665\u0660", "5.0", "0x10", "1e2"])
def test_a_whole_number_setting_takes_plain_digits_only(monkeypatch, text):
    from printz.config import load_settings

    monkeypatch.setenv("PRINTZ_CHAT_RELAY_WINDOW_MS", text)

    with pytest.raises(ConfigError, match=r"RELAY_WINDOW_MS=.*must be a whole"):
        load_settings()


@pytest.mark.parametrize("text", ["inf", "nan", "1_0.5", "\u0665"])
def test_a_decimal_setting_takes_a_plain_number_only(monkeypatch, text):
    from printz.config import load_settings

    monkeypatch.setenv("PRINTZ_CHAT_TIMEOUT_S", text)

    with pytest.raises(ConfigError, match=r"CHAT_TIMEOUT_S=.*must be a number"):
        load_settings()


def test_number_settings_read_signs_spaces_and_exponents(monkeypatch):
    from printz.config import load_settings

    monkeypatch.setenv("PRINTZ_CHAT_RELAY_WINDOW_MS", " +20 ")
    monkeypatch.setenv("PRINTZ_CHAT_TIMEOUT_S", "1.5e1")

    values = load_settings()

    assert values["PRINTZ_CHAT_RELAY_WINDOW_MS"] == 20
    assert values["PRINTZ_CHAT_TIMEOUT_S"] == 15.0


def test_a_broken_sentry_setting_does_not_stop_the_app(settings, caplog):
    settings.update(SENTRY_DSN="this is not a dsn")

    app = create_app(settings)

    assert app.test_client().get("/healthz").status_code == 200
    assert "Sentry could not start" in caplog.text


def test_openapi_document_describes_the_api(client):
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    assert {"/api/auth/register", "/api/auth/login", "/api/auth/me"} <= set(
        document["paths"]
    )
    register = document["paths"]["/api/auth/register"]["post"]
    assert "201" in register["responses"]
    assert "RegisterBody" in document["components"]["schemas"]


def test_openapi_document_names_the_session_cookie_as_its_security(client):
    document = client.get("/api/openapi.json").get_json()

    # flask-openapi3 alone writes `securitySchemes: null`, which is invalid.
    assert document["components"]["securitySchemes"] == {
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "printz_session",
            "description": "set by sign-up and sign-in, ended by sign-out",
        }
    }
    me = document["paths"]["/api/auth/me"]["get"]
    assert me["security"] == [{"session": []}]


def test_openapi_document_lists_what_the_http_server_answers_itself(client):
    document = client.get("/api/openapi.json").get_json()

    responses = document["paths"]["/api/auth/login"]["post"]["responses"]
    for status in ("414", "431"):
        assert list(responses[status]["content"]) == ["text/html"]
    assert "Retry-After" in responses["429"]["headers"]
    assert responses["400"]["headers"]["X-Request-ID"]["required"] is True


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    from printz.config import SETTINGS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()

    undocumented = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert undocumented == []
