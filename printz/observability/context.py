"""Per-request context: request id, Sentry user, tags and the request breadcrumb.

Everything here runs inside Flask's request handling, after the Sentry WSGI
middleware has forked an isolation scope for the request. The user and tags are
set on that scope, so under gthread or gevent workers they can never reach
another request's events: nothing is set in a WSGI wrapper outside the
middleware, where the scope would be the worker's shared one.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import sentry_sdk
from flask import Flask, current_app, g, has_request_context, request
from flask_login import current_user

from printz.errors import DependencyUnavailable
from printz.observability import scrub

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# Paths polled by load balancers: no session lookup, no context, no trace.
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,64}$")


def current_request_id() -> str | None:
    """The id of the request being served: the caller's X-Request-ID or a new one."""
    if not has_request_context():
        return None
    request_id = g.get("request_id")
    if request_id is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.request_id = request_id
    return request_id


def current_user_id() -> str | None:
    """The signed-in customer's id once the request has identified them."""
    if not has_request_context():
        return None
    return g.get("user_id")


def set_sentry_user(user: Any) -> None:
    """Attach the customer to this request's events: id and role.

    The e-mail goes only when ``SENTRY_SEND_USER_EMAIL`` allows personal data.
    """
    g.user_id = str(user.id)
    data = {"id": str(user.id), "role": user.role}
    if current_app.config.get("SENTRY_SEND_USER_EMAIL"):
        data["email"] = user.email
    sentry_sdk.set_user(data)
    sentry_sdk.set_tag("user.role", user.role)


def clear_sentry_user() -> None:
    """Forget the customer for the rest of the request (sign-out)."""
    g.pop("user_id", None)
    sentry_sdk.set_user(None)
    sentry_sdk.get_isolation_scope().remove_tag("user.role")


def add_sentry_tags(**tags: str | int | float | bool) -> None:
    """Tag every event and the transaction of the current request."""
    for key, value in tags.items():
        sentry_sdk.set_tag(key, value)


def plugin_of(endpoint: str | None) -> str:
    """The plugin serving an endpoint (``auth.login`` -> ``auth``)."""
    if not endpoint or "." not in endpoint:
        return "core"
    return endpoint.split(".", 1)[0]


def _begin_request() -> None:
    if request.path in HEALTH_PATHS:
        return
    request_id = current_request_id()
    route = request.url_rule.rule if request.url_rule else "unmatched"
    add_sentry_tags(
        request_id=request_id,
        plugin=plugin_of(request.endpoint),
        **{"http.route": route, "http.method": request.method},
    )
    sentry_sdk.add_breadcrumb(
        type="http",
        category="request",
        message=f"{request.method} {request.path}",
        data={
            "method": request.method,
            "url": request.path,
            "route": route,
            "request_id": request_id,
        },
        level="info",
    )
    if scrub.is_chat_path(request.path) and not scrub.ai_content_allowed():
        sentry_sdk.get_isolation_scope().add_event_processor(scrub.drop_chat_content)
    _identify_user()


def _identify_user() -> None:
    try:
        authenticated = current_user.is_authenticated
    except DependencyUnavailable:
        # The session store is down: a route that needs the session answers
        # 503 by itself, and one that does not (the catalogue) still works.
        authenticated = False
    if authenticated:
        set_sentry_user(current_user)
    else:
        # A request's scope starts as a copy of the scope it was forked from,
        # which need not be empty (with Sentry off the SDK forks nothing, so
        # an app's requests write to the thread's own): no customer of an
        # earlier request may show through.
        clear_sentry_user()


def _finish_request(response):
    response.headers[REQUEST_ID_HEADER] = current_request_id()
    return response


def init_app(app: Flask) -> None:
    # First of all before_request hooks, so that the rate limiter, the origin
    # guard and anything they report already carry the request id and user.
    app.before_request_funcs.setdefault(None, []).insert(0, _begin_request)
    app.after_request(_finish_request)
