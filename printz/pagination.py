"""Cursor pagination shared by every list: `{items, next_cursor}`.

A cursor is the sort key of the last item a page showed, as base64url JSON.
It is opaque to clients but not secret: it only narrows a query the server
builds and scopes itself, so a forged cursor can skip items, never reveal any.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import Field

from printz import unicode
from printz.errors import ValidationFailed

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_CURSOR_LENGTH = 512

PageLimit = Annotated[
    int, Field(ge=1, le=MAX_PAGE_SIZE, description="items per page, 1 to 100")
]
Cursor = Annotated[
    str,
    Field(
        max_length=MAX_CURSOR_LENGTH,
        # base64url, as encode_cursor writes it (padding is tolerated).
        pattern=r"^[A-Za-z0-9_=-]*$",
        description="the `next_cursor` of the previous page",
    ),
]


class InvalidCursor(ValidationFailed):
    code, message = "invalid_cursor", "The cursor is not one this list gave out."

    def __init__(self) -> None:
        super().__init__(fields={"cursor": "not a cursor from this list"})


def encode_cursor(position: dict[str, Any]) -> str:
    text = json.dumps(position, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, shape: dict[str, type]) -> dict[str, Any]:
    """The position in a cursor, each key checked against its type in `shape`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        raise InvalidCursor() from None
    if not isinstance(position, dict) or set(position) != set(shape):
        raise InvalidCursor()
    for key, kind in shape.items():
        # bool is an int to isinstance; no cursor position is ever a bool.
        value = position[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidCursor()
        if isinstance(value, str) and not unicode.is_text(value):
            raise InvalidCursor()
    return position


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def moment_position(moment: datetime) -> int:
    """A stored (UTC) datetime as a cursor position: milliseconds since 1970."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def position_moment(milliseconds: int) -> datetime:
    """The datetime a cursor position names; a cursor out of range is invalid."""
    try:
        return _EPOCH + timedelta(milliseconds=milliseconds)
    except OverflowError:
        raise InvalidCursor() from None
