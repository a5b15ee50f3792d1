"""Response shapes shared by every plugin, for the OpenAPI document."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code")
    message: str
    request_id: str | None = None
    event_id: str | None = Field(None, description="Sentry event id, when reported")
    fields: dict[str, str] | None = Field(None, description="validation only")


class ErrorResponse(BaseModel):
    error: ErrorDetail


COMMON_ERRORS = {
    400: ErrorResponse,
    413: ErrorResponse,
    415: ErrorResponse,
    422: ErrorResponse,
    429: ErrorResponse,
    500: ErrorResponse,
    503: ErrorResponse,
}
