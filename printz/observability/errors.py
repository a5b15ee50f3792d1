"""The one place any error becomes the JSON error body.

Reporting rule: 4xx answers are the client's business and never reach Sentry.
An unhandled exception is reported exactly once, here, and its event id is
returned to the client. An outage of MongoDB or Redis is reported with a
fingerprint per dependency so a thousand failing requests make one issue.
"""

from __future__ import annotations

import logging
from typing import Any

import pymongo.errors
import redis.exceptions
import sentry_sdk
from flask import Flask, jsonify
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.scope import add_global_event_processor
from werkzeug.exceptions import HTTPException

from printz.errors import APIError, DependencyUnavailable
from printz.observability.context import current_request_id

log = logging.getLogger(__name__)
# This module reports to Sentry itself; its ERROR records must not make a second
# event through the logging integration.
ignore_logger(__name__)

HTTP_CODES = {
    400: ("bad_request", "The request is malformed."),
    401: ("unauthorized", "Sign in to do this."),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send the body as application/json."),
    428: ("precondition_required", "A required header is missing."),
    429: ("rate_limited", "Too many requests; slow down."),
}

INTERNAL_ERROR_MESSAGE = "Something went wrong on our side; it has been reported."

OUTAGES = (
    (pymongo.errors.ConnectionFailure, "mongo"),
    (pymongo.errors.ServerSelectionTimeoutError, "mongo"),
    (pymongo.errors.NetworkTimeout, "mongo"),
    (redis.exceptions.ConnectionError, "redis"),
    (redis.exceptions.TimeoutError, "redis"),
)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    event_id: str | None = None,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
):
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": current_request_id(),
    }
    if event_id:
        body["event_id"] = event_id
    if fields is not None:
        body["fields"] = fields
    body.update(extra or {})
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def dependency_of(error: BaseException | None) -> str | None:
    """Which backing service an exception says is down, if any."""
    if isinstance(error, DependencyUnavailable):
        return error.dependency
    for kind, dependency in OUTAGES:
        if isinstance(error, kind):
            return dependency
    return None


def fingerprint_outages(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Group every reported outage by dependency, however it was reported.

    Most outages are reported here, but one raised where Flask cannot hand it to
    an error handler (an after_request hook) is reported by the Flask
    integration; this event processor gives it the same fingerprint.
    """
    error = (hint or {}).get("exc_info", (None, None, None))[1]
    dependency = dependency_of(error)
    if dependency is None and error is not None:
        dependency = dependency_of(error.__cause__)
    if dependency is not None and not event.get("fingerprint"):
        event["fingerprint"] = ["dependency-unavailable", dependency]
        event.setdefault("tags", {})["dependency"] = dependency
    return event


def report_outage(dependency: str, error: BaseException) -> str | None:
    """Report an outage under one fingerprint per dependency; the event id."""
    log.error("%s is unavailable: %s", dependency, error)
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = ["dependency-unavailable", dependency]
        scope.set_tag("dependency", dependency)
        scope.level = "error"
        return sentry_sdk.capture_exception(error)


def handle_api_error(error: APIError):
    """An answer the view chose; only a dependency outage is reported."""
    event_id = None
    if isinstance(error, DependencyUnavailable):
        event_id = report_outage(error.dependency, error.__cause__ or error)
    return error_response(
        error.status,
        error.code,
        error.message,
        event_id=event_id,
        fields=error.fields,
        headers=error.headers,
        extra=error.extra,
    )


def handle_http_error(error: HTTPException):
    status = error.code or 500
    code, message = HTTP_CODES.get(status, ("http_error", error.name))
    headers = {}
    valid_methods = getattr(error, "valid_methods", None)
    if status == 405 and valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    if status == 429:
        # flask-limiter's error carries the limit that was hit.
        limit = getattr(error, "limit", None)
        if limit is not None:
            message = f"Too many requests: limit is {limit.limit}."
            log.warning("rate limit hit: %s", limit.limit)
    original = getattr(error, "original_exception", None)
    if status >= 500 and original is not None:
        return _answer_unhandled(original)
    return error_response(status, code, message, headers=headers)


def _answer_unhandled(original: BaseException):
    """An exception Flask could not hand to the handlers above.

    Raised in an after_request hook or in an error handler, it reached Flask's
    last resort, whose got_request_exception signal the Flask integration
    reports just before this runs: the event id is that report's.
    """
    event_id = sentry_sdk.last_event_id()
    if isinstance(original, APIError):
        return error_response(
            original.status,
            original.code,
            original.message,
            event_id=event_id if original.status >= 500 else None,
            extra=original.extra,
        )
    dependency = dependency_of(original)
    if dependency is not None:
        return _outage_response(dependency, event_id)
    return error_response(
        500, "internal_error", INTERNAL_ERROR_MESSAGE, event_id=event_id
    )


def _outage_response(dependency: str, event_id: str | None):
    return error_response(
        503,
        "dependency_unavailable",
        f"A service Printz needs ({dependency}) is not answering.",
        event_id=event_id,
        extra={"dependency": dependency},
    )


def handle_unexpected(error: Exception):
    """Any other exception: reported once here, answered 503 or 500."""
    if isinstance(error, HTTPException):
        return handle_http_error(error)
    dependency = dependency_of(error)
    if dependency is not None:
        return _outage_response(dependency, report_outage(dependency, error))
    event_id = sentry_sdk.capture_exception(error)
    log.error("unhandled error (event %s)", event_id, exc_info=error)
    return error_response(
        500, "internal_error", INTERNAL_ERROR_MESSAGE, event_id=event_id
    )


_processor_added = False


def init_app(app: Flask) -> None:
    global _processor_added
    if not _processor_added:
        add_global_event_processor(fingerprint_outages)
        _processor_added = True
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
