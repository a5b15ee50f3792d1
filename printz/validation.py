"""Pydantic validation errors become the 422 error body, naming each field."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from printz.errors import ValidationFailed


def field_errors(error: ValidationError) -> dict[str, str]:
    """``{"items.0.quantity": "Input should be ..."}`` from a pydantic error."""
    fields: dict[str, str] = {}
    for problem in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in problem["loc"]) or "body"
        fields.setdefault(location, problem["msg"])
    return fields


def validation_failed(error: ValidationError) -> Any:
    """flask-openapi3's callback: raise the API error instead of its own body."""
    raise ValidationFailed(fields=field_errors(error))
