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


def dependency_of(error: BaseException) -> str | None:
    """Which backing service an exception says is down, if any."""
    for kind, dependency in OUTAGES:
        if isinstance(error, kind):
            return dependency
    return None


def report_outage(dependency: str, error: BaseException) -> str | None:
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = ["dependency-unavailable", dependency]
        scope.set_tag("dependency", dependency)
        scope.level = "error"
        return sentry_sdk.capture_exception(error)


def handle_api_error(error: APIError):
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
    return error_response(status, code, message, headers=headers)


def handle_unexpected(error: Exception):
    if isinstance(error, HTTPException):
        return handle_http_error(error)
    dependency = dependency_of(error)
    if dependency is not None:
        log.error("%s is unavailable: %s", dependency, error)
        event_id = report_outage(dependency, error)
        return error_response(
            503,
            "dependency_unavailable",
            f"A service Printz needs ({dependency}) is not answering.",
            event_id=event_id,
            extra={"dependency": dependency},
        )
    event_id = sentry_sdk.capture_exception(error)
    log.error("unhandled error (event %s)", event_id, exc_info=error)
    return error_response(
        500,
        "internal_error",
        "Something went wrong on our side; it has been reported.",
        event_id=event_id,
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
