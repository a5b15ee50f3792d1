"""Pydantic validation errors become the 422 error body, naming each field."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

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


class QueryModel(BaseModel):
    """A query-string model whose JSON schema is built once per set of arguments.

    flask-openapi3 asks a route's query model for its JSON schema on every
    request, to learn which parameters are lists; pydantic builds it afresh
    each time, which cost more than the rest of a catalogue request. The
    schema of a class never changes, so it is kept; callers get a copy, as
    the OpenAPI generator edits what it is given.
    """

    _json_schemas: ClassVar[dict[tuple[Any, ...], dict[str, Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._json_schemas = {}

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (args, tuple(sorted(kwargs.items(), key=lambda item: item[0])))
        try:
            schema = cls._json_schemas[key]
        except (KeyError, TypeError):  # TypeError: an unhashable argument
            schema = super().model_json_schema(*args, **kwargs)
            try:
                cls._json_schemas[key] = schema
            except TypeError:
                return schema
        return copy.deepcopy(schema)
