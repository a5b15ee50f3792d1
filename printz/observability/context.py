"""Per-request context: request id, Sentry user, tags and the request breadcrumb.

Everything here runs inside Flask's request handling, after the Sentry WSGI
middleware has forked an isolation scope for the request, so nothing set here
can leak onto another request's events, whatever the worker class.
"""

from __future__ import annotations

import logging
import re
import uuid

import sentry_sdk
from flask import Flask, current_app, g, has_request_context, request

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,64}$")


def current_request_id() -> str | None:
    """The id of the request being served, made on first use."""
    if not has_request_context():
        return None
    request_id = g.get("request_id")
    if request_id is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.request_id = request_id
    return request_id


def current_user_id() -> str | None:
    if not has_request_context():
        return None
    return g.get("user_id")


def set_sentry_user(user) -> None:
    """Attach the customer to Sentry: id and role, email only when allowed."""
    g.user_id = str(user.id)
    data = {"id": str(user.id), "role": user.role}
    if current_app.config.get("SENTRY_SEND_USER_EMAIL"):
        data["email"] = user.email
    sentry_sdk.set_user(data)
    sentry_sdk.set_tag("user.role", user.role)


def clear_sentry_user() -> None:
    g.pop("user_id", None)
    sentry_sdk.set_user(None)


def add_sentry_tags(**tags: str | int | float | bool) -> None:
    for key, value in tags.items():
        sentry_sdk.set_tag(key, value)


def _plugin_of(endpoint: str | None) -> str:
    if not endpoint or "." not in endpoint:
        return "core"
    return endpoint.split(".", 1)[0]


def _begin_request() -> None:
    from flask_login import current_user

    request_id = current_request_id()
    add_sentry_tags(
        request_id=request_id,
        plugin=_plugin_of(request.endpoint),
        **{"http.route": request.url_rule.rule if request.url_rule else "unmatched"},
    )
    sentry_sdk.add_breadcrumb(
        category="http",
        message=f"{request.method} {request.path}",
        data={"request_id": request_id, "endpoint": request.endpoint},
        level="info",
    )
    if request.path.startswith("/api/") and current_user.is_authenticated:
        set_sentry_user(current_user)


def _finish_request(response):
    response.headers[REQUEST_ID_HEADER] = current_request_id()
    return response


def init_app(app: Flask) -> None:
    app.before_request(_begin_request)
    app.after_request(_finish_request)
