"""The API errors views raise. Each has an HTTP status and a stable code.

None of these is reported to Sentry: they are answers to the client, not
failures of Printz. ``DependencyUnavailable`` is the exception: an outage of
MongoDB or Redis is reported once per dependency (see observability.errors).
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error answered to the client with a JSON error body."""

    status = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.code = code or self.code
        self.fields = fields
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(APIError):
    status, code = 400, "bad_request"


class Unauthorized(APIError):
    status, code, message = 401, "unauthorized", "Sign in to do this."


class Forbidden(APIError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class NotFound(APIError):
    status, code, message = 404, "not_found", "Not found."


class Conflict(APIError):
    status, code = 409, "conflict"


class PreconditionRequired(APIError):
    status, code = 428, "precondition_required"


class ValidationFailed(APIError):
    """422: the body or query does not fit the schema; ``fields`` says where."""

    status, code, message = 422, "validation_failed", "Some fields are not valid."


class RateLimited(APIError):
    status, code, message = 429, "rate_limited", "Too many requests; slow down."


class ServiceUnavailable(APIError):
    status, code = 503, "service_unavailable"


class DependencyUnavailable(ServiceUnavailable):
    """MongoDB or Redis did not answer; reported to Sentry per dependency."""

    code = "dependency_unavailable"

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(
            message or f"A service Printz needs ({dependency}) is not answering.",
            extra={"dependency": dependency},
        )
        self.dependency = dependency
