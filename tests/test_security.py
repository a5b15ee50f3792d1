"""Security review: cookies, cross-site requests, CORS and response headers."""

from __future__ import annotations

import pytest

from printz import create_app
from tests.conftest import PASSWORD, new_email

FRONT_END = "https://shop.example.com"


def register_response(client):
    return client.post(
        "/api/auth/register",
        json={"email": new_email(), "password": PASSWORD, "name": "Ada"},
    )


def test_security_headers_are_on_every_response(client):
    for response in (client.get("/healthz"), client.get("/api/nothing")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "Strict-Transport-Security" not in response.headers


def test_production_adds_hsts_and_secure_cookies(settings):
    settings.update(PRINTZ_ENV="production", SECRET_KEY="a-real-production-secret")
    app = create_app(settings)
    client = app.test_client()

    response = register_response(client)

    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_session_lifetime_comes_from_settings(settings):
    settings.update(PRINTZ_SESSION_LIFETIME_S=3600)
    app = create_app(settings)

    cookie = register_response(app.test_client()).headers["Set-Cookie"]

    assert "Expires=" in cookie
    assert app.permanent_session_lifetime.total_seconds() == 3600


def test_cors_answers_only_configured_front_ends(settings):
    settings.update(PRINTZ_ALLOWED_ORIGINS=FRONT_END)
    client = create_app(settings).test_client()

    preflight = client.options(
        "/api/chat",
        headers={
            "Origin": FRONT_END,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, sentry-trace, baggage",
        },
    )
    stranger = client.options(
        "/api/chat",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
        },
    )

    assert preflight.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "sentry-trace" in allowed
    assert "baggage" in allowed
    assert "Access-Control-Allow-Origin" not in stranger.headers


@pytest.mark.parametrize(
    "path", ["/api/orders", "/api/orders/0123456789abcdef01234567/cancel", "/api/chat"]
)
def test_a_preflight_needs_no_sign_in(settings, path):
    settings.update(PRINTZ_ALLOWED_ORIGINS=FRONT_END)
    client = create_app(settings).test_client()

    preflight = client.options(
        path,
        headers={
            "Origin": FRONT_END,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )

    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == FRONT_END
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "idempotency-key" in allowed


def test_a_configured_front_end_may_change_state(settings):
    settings.update(PRINTZ_ALLOWED_ORIGINS=FRONT_END)
    client = create_app(settings).test_client()
    register_response(client)

    response = client.post("/api/auth/logout", headers={"Origin": FRONT_END})

    assert response.status_code == 200


def test_without_configured_origins_there_is_no_cors(client):
    response = client.get("/healthz", headers={"Origin": FRONT_END})

    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_cross_site_form_cannot_place_an_order(customer):
    response = customer.post(
        "/api/orders",
        data="items=1",
        content_type="text/plain",
        headers={"Idempotency-Key": "form-1"},
    )

    assert response.status_code == 415


def test_customers_are_refused_staff_routes(customer):
    response = customer.post(
        "/api/orders/6b1198dc486f8da7ba3b9823/status", json={"status": "paid"}
    )

    assert response.status_code == 403
