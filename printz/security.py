"""Request guards every route shares: body rules, origins, security headers.

A customer's browser carries the session cookie to any site's request, so a
state-changing request is accepted only as JSON and only from an allowed
origin. Browsers send ``Origin`` on every cross-site POST, and a plain HTML
form cannot send ``application/json``, so together these stop cross-site
forms and scripts from acting for a signed-in customer.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import werkzeug.exceptions
from flask import Flask, current_app, request
from flask_cors import CORS

from printz import unicode
from printz.errors import APIError, BadRequest, Forbidden
from printz.schemas import SESSION_SCHEME

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class UnsupportedMediaType(APIError):
    status, code, message = (
        415,
        "unsupported_media_type",
        ("Send the body as application/json."),
    )


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origins() -> set[str]:
    configured = current_app.config.get("PRINTZ_ALLOWED_ORIGINS") or ()
    return {_origin_of(request.host_url)} | {o.rstrip("/").lower() for o in configured}


def guard_state_change() -> None:
    """Reject cross-origin and non-JSON state changes before any view runs."""
    if request.method not in STATE_CHANGING:
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/").lower() not in allowed_origins():
        log.warning(
            "rejected %s %s from origin %s", request.method, request.path, origin
        )
        raise Forbidden("This origin may not change anything here.", code="bad_origin")
    has_body = (
        bool(request.content_length)
        or request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    )
    if has_body and request.mimetype != "application/json":
        raise UnsupportedMediaType()
    if has_body:
        _refuse_long_chunked_body()
        # Parse now so malformed JSON is a 400 and a body over the size limit a
        # 413, before validation turns either into a confusing 422.
        try:
            request.get_json()
        except werkzeug.exceptions.BadRequest:
            raise BadRequest(
                "The body is not valid JSON.", code="malformed_json"
            ) from None
        except RecursionError:
            # json.loads recurses per level: a body of a few thousand "[" is
            # valid JSON that would otherwise end as a 500.
            raise BadRequest(
                "The body is nested too deeply to read.", code="malformed_json"
            ) from None
        if unicode.may_hold_lone_surrogate(
            request.get_data(cache=True)
        ) and unicode.holds_lone_surrogate(request.get_json()):
            raise BadRequest(
                "The body holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                "which is no character.",
                code="malformed_json",
            )


def _refuse_long_chunked_body() -> None:
    """A chunked body that reaches the size limit is a 413.

    Werkzeug reads a body of unknown length up to the limit and stops there
    without a word; parsed, the cut-off JSON would be a misleading 400.
    """
    limit = request.max_content_length
    if limit is None or request.content_length is not None:
        return
    if len(request.get_data(cache=True)) >= limit:
        raise werkzeug.exceptions.RequestEntityTooLarge()


def add_security_headers(response):
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config["PRINTZ_ENV"] == "production":
        headers.setdefault(
            "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
        )
    return response


def document_session_cookie(app: Flask) -> None:
    """Name the session cookie in the OpenAPI document as the way to sign in.

    flask-openapi3 writes ``securitySchemes: null`` when the app has no schemes,
    which is not valid OpenAPI, and routes could not say they need a session.
    """
    if not hasattr(app, "security_schemes"):
        return
    app.security_schemes = {
        **(app.security_schemes or {}),
        SESSION_SCHEME: {
            "type": "apiKey",
            "in": "cookie",
            "name": app.config["SESSION_COOKIE_NAME"],
            "description": "set by sign-up and sign-in, ended by sign-out",
        },
    }


def init_app(app: Flask) -> None:
    document_session_cookie(app)
    app.before_request(guard_state_change)
    app.after_request(add_security_headers)
    origins = list(app.config.get("PRINTZ_ALLOWED_ORIGINS") or ())
    if origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            supports_credentials=True,
            allow_headers=[
                "Content-Type",
                "Idempotency-Key",
                "X-Request-ID",
                "sentry-trace",
                "baggage",
            ],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "Idempotent-Replayed",
                "x-vercel-ai-ui-message-stream",
            ],
        )
