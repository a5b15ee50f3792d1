"""Response shapes shared by every plugin, for the OpenAPI document."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The session cookie as an OpenAPI security scheme (see security.py), and the
# requirements a route declares with it.
SESSION_SCHEME = "session"
SIGNED_IN = [{SESSION_SCHEME: []}]
SIGNED_IN_OR_NOT = [{}, {SESSION_SCHEME: []}]


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code")
    message: str
    request_id: str | None = None
    event_id: str | None = Field(None, description="Sentry event id, when reported")
    fields: dict[str, str] | None = Field(None, description="validation only")


REQUEST_ID = {
    "description": "the request's id, also in the body and in the logs",
    "required": True,
    "schema": {"type": "string"},
}


class ErrorResponse(BaseModel):
    # flask-openapi3 documents openapi_extra's headers on each answer.
    model_config = ConfigDict(openapi_extra={"headers": {"X-Request-ID": REQUEST_ID}})

    error: ErrorDetail


class RateLimitedResponse(ErrorResponse):
    model_config = ConfigDict(
        openapi_extra={
            "headers": {
                "X-Request-ID": REQUEST_ID,
                "Retry-After": {
                    "description": "seconds until the limit allows another try",
                    "schema": {"type": "integer", "minimum": 0},
                },
            }
        }
    )


def _server_page(status_text: str, limit: str) -> dict:
    """A refusal gunicorn answers itself, as HTML, before Printz sees the request."""
    return {
        "description": f"{status_text}: {limit}; the HTTP server's own HTML page",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }


COMMON_ERRORS = {
    400: ErrorResponse,
    # A state change from an origin that is not allowed (see security.py).
    403: ErrorResponse,
    413: ErrorResponse,
    414: _server_page("URI Too Long", "a request line over 4094 bytes"),
    415: ErrorResponse,
    422: ErrorResponse,
    429: RateLimitedResponse,
    431: _server_page(
        "Request Header Fields Too Large", "a header field over 8190 bytes"
    ),
    500: ErrorResponse,
    503: ErrorResponse,
}
