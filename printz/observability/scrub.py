"""Keep customer secrets inside the process.

One recursive scrubber walks everything Sentry is about to send (events,
transactions with their spans, breadcrumbs, log records) and masks values by the
name of their key and by their shape. It runs in every ``before_*`` hook, so a
new place the SDK starts filling is covered without a special case.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

FILTERED = "[Filtered]"

# Compared against a key with separators removed and lower-cased, so
# "X-Api-Key", "api_key" and "apiKey" all match "apikey".
DENY_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "apikey",
    "authorization",
    "cookie",
    "sessionid",
    "csrf",
    "cardnumber",
    "creditcard",
    "cvv",
    "cvc",
    "privatekey",
    "credential",
)
# Whole words in a key ("access_token" yes, "input_tokens" no).
DENY_KEY_WORDS = frozenset({"token", "session", "sid", "card", "pan", "auth", "pwd"})

_SEPARATORS = re.compile(r"[^a-z0-9]")
_WORDS = re.compile(r"[a-z0-9]+")

# Shapes of secrets inside free text: URLs, span descriptions, messages.
_VALUE_PATTERNS = (
    # Redis keys of server-side sessions carry the session id.
    (re.compile(r"(session:)[A-Za-z0-9_\-]{6,}"), r"\1" + FILTERED),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-+/=]{6,}"), r"\1" + FILTERED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), FILTERED),
    (
        re.compile(
            r"(?i)\b((?:password|passwd|pwd|secret|token|api_?key|session(?:_?id)?"
            r"|card_?number|cvv|cvc)\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;}\"']+)"
        ),
        r"\1" + FILTERED,
    ),
    (
        re.compile(
            r"(?i)(\"(?:password|passwd|secret|token|api_?key|card_?number|cvv|cvc)"
            r"\"\s*:\s*)\"[^\"]*\""
        ),
        r'\1"' + FILTERED + '"',
    ),
)
_CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def is_secret_key(key: Any) -> bool:
    """True when a mapping key names something secret."""
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    if any(part in _SEPARATORS.sub("", lowered) for part in DENY_KEY_PARTS):
        return True
    words = _WORDS.findall(re.sub(r"([a-z])([A-Z])", r"\1_\2", key).lower())
    return any(word in DENY_KEY_WORDS for word in words)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return FILTERED if _luhn_ok(digits) else match.group(0)

    return _CARD_CANDIDATE.sub(replace, text)


def scrub_text(text: str) -> str:
    """Mask secrets found by shape inside one string."""
    if "=" in text and "&" in text and " " not in text and "://" not in text:
        text = scrub_query_string(text)
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    if any(char.isdigit() for char in text):
        text = _mask_cards(text)
    return text


def scrub_query_string(query: str) -> str:
    """Mask the values of secret parameters in a query string."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return FILTERED
    if not pairs:
        return query
    cleaned = [(k, FILTERED if is_secret_key(k) else v) for k, v in pairs]
    return urlencode(cleaned, safe="[]")


def scrub(value: Any, depth: int = 0) -> Any:
    """Return value with every secret masked, walking dicts, lists and strings."""
    if depth > 30:
        return FILTERED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            if is_secret_key(key) and item not in (None, "", [], {}):
                cleaned[key] = FILTERED
            elif key == "query_string" and isinstance(item, str):
                cleaned[key] = scrub_text(scrub_query_string(item))
            else:
                cleaned[key] = scrub(item, depth + 1)
        return cleaned
    if isinstance(value, list | tuple):
        return [scrub(item, depth + 1) for item in value]
    return value


_policy = {"ai_content": False}


def configure(*, allow_ai_content: bool) -> None:
    """Set what the scrubber lets through; called by the instrument step."""
    _policy["ai_content"] = allow_ai_content


def ai_content_allowed() -> bool:
    """Whether prompts, answers and tool arguments may be sent to Sentry."""
    return _policy["ai_content"]


def _drop_chat_content(event: dict[str, Any]) -> None:
    """Chat prompts and answers stay out of Sentry unless settings allow them."""
    request = event.get("request")
    if not isinstance(request, dict) or ai_content_allowed():
        return
    url = request.get("url") or ""
    chat_route = "/api/chat" in url or "/api/conversations" in url
    if chat_route and request.get("data"):
        request["data"] = "[Filtered: chat content]"


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    _drop_chat_content(event)
    return scrub(event)


def before_send_transaction(
    event: dict[str, Any], hint: dict[str, Any]
) -> dict[str, Any]:
    _drop_chat_content(event)
    return scrub(event)


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    return scrub(crumb)


def before_send_log(record: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    return scrub(record)
