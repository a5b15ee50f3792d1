"""Lone UTF-16 surrogates: valid in JSON, no text anywhere else.

JSON may escape any code unit, so ``"\\ud800"`` parses, in Python, to a
string that UTF-8 cannot encode: MongoDB, the log and every reply would fail
on it. A surrogate pair (an escaped emoji) parses to one real character.
"""

from __future__ import annotations

import json
import re
from typing import Any

# How a surrogate is escaped in JSON; UTF-8 cannot carry one unescaped.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def may_hold_lone_surrogate(raw: bytes) -> bool:
    """Whether JSON text escapes a surrogate: cheap, and False for nearly all."""
    return _SURROGATE_ESCAPE.search(raw) is not None


def is_text(text: str) -> bool:
    """False for a string holding a lone surrogate, which UTF-8 cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def holds_lone_surrogate(value: Any) -> bool:
    """Whether parsed JSON holds a string with a surrogate that pairs with nothing."""
    return not is_text(json.dumps(value, ensure_ascii=False))


def mend(value: Any) -> Any:
    """Parsed JSON with each lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [mend(item) for item in value]
    if isinstance(value, dict):
        return {mend(key): mend(item) for key, item in value.items()}
    return value
