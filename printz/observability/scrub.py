"""Keep customer secrets inside the process.

Everything Sentry is about to send passes through here: error events,
transactions with their spans, breadcrumbs, Sentry Logs and metrics. Values are
masked by the name of their key (``password``, ``api_key``, ``Authorization``,
``session_id``...) and by their shape inside free text (``session:<id>`` Redis
keys, ``Bearer`` tokens, ``key=value`` pairs, Luhn-valid card numbers,
credentials in URLs, e-mail addresses). MongoDB commands keep their shape and
lose every literal. Chat prompts and answers are dropped unless the
``SENTRY_SEND_AI_CONTENT`` setting allows them.

Why a scrubber of our own: sentry-sdk 2.x matches only top-level keys, never
looks inside query strings or span descriptions, and always puts Redis keys on
spans and breadcrumbs. A hook that raises makes the SDK drop the event (it
fails closed), but the walk below is written never to raise.

Cost matters (every sampled transaction goes through here): patterns are
compiled once, a cheap pre-check skips strings that cannot hold a secret, key
decisions are cached, spans are walked by the fields that can carry data, and
breadcrumbs are scrubbed when an error event carries them out, not when they
are recorded: every request records several (each Redis and MongoDB command),
traced or not, and almost none ever leave the process.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

FILTERED = "[Filtered]"
AI_CONTENT_FILTERED = "[Filtered: chat content]"
MAX_DEPTH = 24

# Compared against a key lower-cased with separators removed, so "X-Api-Key",
# "api_key" and "apiKey" all match "apikey".
DENY_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "cookie",
    "sessionid",
    "csrf",
    "xsrf",
    "cardnumber",
    "creditcard",
    "cvv",
    "cvc",
    "credential",
)
# Whole words of a key: "access_token" and "refreshToken" yes, "input_tokens" no.
DENY_KEY_WORDS = frozenset(
    {"token", "session", "sid", "card", "pan", "auth", "pwd", "jwt", "bearer"}
)
# Plural words that name secrets when they hold text ("tokens": ["tok_..."]) and
# counts when they hold numbers ("input_tokens": 12): only text is masked.
DENY_TEXT_KEY_WORDS = frozenset({"tokens", "keys", "secrets", "passwords"})
# Ids the SDK makes itself; never checked for card-number shapes.
ID_KEYS = frozenset(
    {
        "trace_id",
        "span_id",
        "parent_span_id",
        "event_id",
        "segment_id",
        "profiler_id",
        "sentry.segment.id",
        "thread.id",
        "time_unix_nano",
    }
)
# Span data and log attributes that hold prompts, answers and tool arguments.
AI_CONTENT_KEYS = frozenset(
    {
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.choice",
        "gen_ai.request.messages",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.response.text",
        "gen_ai.system_instructions",
        "gen_ai.user.message",
        "gen_ai.embeddings.input",
        "gen_ai.tool.input",
        "gen_ai.tool.output",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.response.tool_calls",
    }
)
# Attribute names of Sentry's AI conventions and Printz's own: "input_tokens" or
# "time_to_first_token" are counts and timings, whatever the word "token" says.
# Their values are still checked by shape, and the content ones are dropped.
CONVENTION_PREFIXES = ("gen_ai.", "printz.ai.")
CHAT_PATHS = ("/api/chat", "/api/conversations")
LOG_PARAMETER_PREFIX = "sentry.message.parameter."
# Event parts that hold no customer data, or were scrubbed when recorded.
_SKIPPED_EVENT_KEYS = frozenset({"modules", "debug_meta", "sdk"})

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORDS = re.compile(r"[a-z0-9]+")
_SEPARATORS = re.compile(r"[^a-z0-9]")

# A string without any of these cannot match a pattern below. Matched against
# the lower-cased text: an ignore-case alternation is five times slower.
_SUSPECT = re.compile(
    r"s(?:ession|ecret|id)|[srp]k-|bearer|basic\s|token|pas|pwd|key|auth"
    r"|c(?:ookie|ard|v[vc]|srf|redential)|://|@|\d{4}"
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@")
_SESSION_KEY = re.compile(r"(session:)[A-Za-z0-9_\-.]{6,}")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=\-]{6,}")
_PROVIDER_KEY = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}")
# key=value, key: value, "key": "value", key='value' where the key names a secret.
# The key's leading run of word characters starts where such a run starts: a
# match can only begin there anyway, and without the look-behind the engine
# retried the run from each of its characters, so a 32-character id (a request
# id, a hex digest) cost 80 us instead of 2.
_SECRET_PAIR = re.compile(
    r"(?i)((?<![\w.\-])[\w.\-]*(?:(?:password|passwd|pwd|secret|token|api[_\-]?key"
    r"|access[_\-]?key|private[_\-]?key|authorization|cookie|csrf|card[_\-]?number"
    r"|cvv|cvc|credentials?)(?![a-z])[\w.\-]*|(?:session(?:[_\-]?id)?|sid)"
    r"(?![\w.\-]))[\"']?\s*[=:]\s*)(?!\[Filtered)(\"[^\"]*\"|'[^']*'|[^\s&,;}\])]+)"
)
_CARD_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])\d(?:[ \-]?\d){12,18}(?![0-9A-Za-z])")
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
)


@dataclass(frozen=True)
class Policy:
    """What may leave the process besides technical data."""

    ai_content: bool = False
    emails: bool = False


_policy = Policy()


def configure(*, allow_ai_content: bool, allow_email: bool = False) -> None:
    """Set what the scrubber lets through; called by the instrument step."""
    global _policy
    _policy = Policy(ai_content=allow_ai_content, emails=allow_email)


def ai_content_allowed() -> bool:
    """Whether prompts, answers and tool arguments may be sent to Sentry."""
    return _policy.ai_content


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when a mapping key names something secret."""
    if key.startswith(CONVENTION_PREFIXES):
        return False
    lowered = key.lower()
    squashed = _SEPARATORS.sub("", lowered)
    if any(part in squashed for part in DENY_KEY_PARTS):
        return True
    return any(word in DENY_KEY_WORDS for word in _key_words(key))


@functools.lru_cache(maxsize=4096)
def names_secret_text(key: str) -> bool:
    """True when a key names secrets if its value is text (``tokens``)."""
    if key.startswith(CONVENTION_PREFIXES):
        return False
    return any(word in DENY_TEXT_KEY_WORDS for word in _key_words(key))


def _key_words(key: str) -> list[str]:
    return _WORDS.findall(_CAMEL.sub(r"\1_\2", key).lower())


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return FILTERED if _luhn_valid(digits) else match.group(0)


def _mask_pair(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match.group(1)}{quote}{FILTERED}{quote}"


# Span descriptions, breadcrumb messages and log templates repeat from request
# to request ("GET catalog:v3:products:..."), so short strings are remembered
# with their scrubbed form; profiling showed the regexes were a quarter of a
# traced request's CPU. Long strings (bodies, tracebacks) are not kept.
_MEMO_MAX_LENGTH = 300


def scrub_text(text: str) -> str:
    """Mask secrets found by their shape inside one string."""
    if len(text) < 6:
        return text
    if len(text) <= _MEMO_MAX_LENGTH:
        return _scrub_text_remembered(text, _policy.emails)
    return _scrub_text(text, _policy.emails)


@functools.lru_cache(maxsize=8192)
def _scrub_text_remembered(text: str, emails_allowed: bool) -> str:
    return _scrub_text(text, emails_allowed)


def _scrub_text(text: str, emails_allowed: bool) -> str:
    if _SUSPECT.search(text.lower()) is None:
        return text
    # Each pattern needs its own punctuation; a text without it skips the pattern.
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\1" + FILTERED + "@", text)
    if "session:" in text:
        text = _SESSION_KEY.sub(r"\1" + FILTERED, text)
    text = _AUTH_SCHEME.sub(r"\1\2" + FILTERED, text)
    text = _PROVIDER_KEY.sub(FILTERED, text)
    if "=" in text or ":" in text:
        text = _SECRET_PAIR.sub(_mask_pair, text)
    if not emails_allowed and "@" in text:
        text = _EMAIL.sub(FILTERED, text)
    return _CARD_CANDIDATE.sub(_mask_card, text)


def scrub(value: Any, depth: int = 0) -> Any:
    """Mask every secret in value, walking dicts and lists in place."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return _scrub_mapping(value, depth)
    if isinstance(value, list | tuple):
        items = value if isinstance(value, list) else list(value)
        if depth >= MAX_DEPTH:
            return FILTERED
        for index, item in enumerate(items):
            items[index] = scrub(item, depth + 1)
        return items
    if value is None or isinstance(value, bool | float | date):
        return value
    if isinstance(value, int):
        return _scrub_number(value)
    # Breadcrumb data and log attributes may hold any object; the SDK would send
    # its repr later, past this scrubber, so the repr is scrubbed now.
    return scrub_text(repr(value))


def _scrub_number(number: int) -> int | str:
    """A card number sent as a JSON number is still a card number."""
    if 10**12 <= number < 10**19 and _luhn_valid(str(number)):
        return FILTERED
    return number


def _scrub_mapping(mapping: dict[Any, Any], depth: int) -> dict[Any, Any] | str:
    if depth >= MAX_DEPTH:
        return FILTERED
    for key, item in mapping.items():
        mapping[key] = _scrub_item(key, item, depth)
    return mapping


def _scrub_item(key: Any, item: Any, depth: int) -> Any:
    if not isinstance(key, str):
        return scrub(item, depth + 1)
    if key in ID_KEYS:
        return item
    if item is None or isinstance(item, bool | float):
        return FILTERED if item is not None and is_secret_key(key) else item
    if key in AI_CONTENT_KEYS and not _policy.ai_content:
        return AI_CONTENT_FILTERED
    if is_secret_key(key):
        return item if item in ("", [], {}) else FILTERED
    if names_secret_text(key) and not isinstance(item, int) and item:
        return FILTERED
    return scrub(item, depth + 1)


# -- MongoDB commands -------------------------------------------------------------

# Values under these keys are structure, not data: the collection a command
# names, limits, sort and projection directions.
_MONGO_STRUCTURE_KEYS = frozenset(
    {
        "find",
        "insert",
        "update",
        "delete",
        "aggregate",
        "findAndModify",
        "count",
        "distinct",
        "createIndexes",
        "drop",
        "getMore",
        "collection",
        "limit",
        "batchSize",
        "ordered",
        "singleBatch",
        "sort",
        "projection",
        "$limit",
        "$skip",
        "$sort",
        "$project",
    }
)


@functools.lru_cache(maxsize=1024)
def mongo_command_shape(command: str) -> str:
    """A MongoDB command (as the SDK prints it) with every literal replaced.

    Cached: with personal data off the SDK has already put ``%s`` in place of
    most values, so the same few command texts come back on every request.
    """
    try:
        parsed = json.loads(command)
    except ValueError:
        return scrub_text(command)
    return json.dumps(_shape(parsed, 0), separators=(",", ":"))


def _shape(value: Any, depth: int) -> Any:
    if depth >= MAX_DEPTH:
        return "?"
    if isinstance(value, dict):
        shaped = {}
        for key, item in value.items():
            if key in _MONGO_STRUCTURE_KEYS and not isinstance(item, list):
                shaped[key] = item if not isinstance(item, dict) else _keep(item)
            else:
                shaped[key] = _shape(item, depth + 1)
        return shaped
    if isinstance(value, list):
        return [_shape(item, depth + 1) for item in value]
    return "?"


def _keep(mapping: dict[str, Any]) -> dict[str, Any]:
    """Sort and projection specs: field names with 1, -1, 0 or true."""
    return {
        key: item if isinstance(item, bool | int) and abs(item) <= 1 else "?"
        for key, item in mapping.items()
    }


def _is_mongo(data: Any) -> bool:
    return isinstance(data, dict) and data.get("db.system") == "mongodb"


# -- the hooks given to sentry_sdk.init ----------------------------------------------


def _is_chat_request(event: dict[str, Any]) -> bool:
    request = event.get("request")
    if not isinstance(request, dict):
        return False
    url = request.get("url")
    return isinstance(url, str) and any(path in url for path in CHAT_PATHS)


def is_chat_path(path: str) -> bool:
    return path.startswith(CHAT_PATHS)


def drop_chat_content(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """An event processor: chat content goes before the SDK serialises the event.

    ``before_send`` drops it too, but only after the SDK has walked a chat body
    the fast copy of printz.observability.serialize cannot take (the SDK trims
    its nested parts) through its own serializer.
    """
    _drop_chat_content(event)
    return event


def _drop_chat_content(event: dict[str, Any]) -> None:
    """Chat prompts and answers stay out of Sentry unless settings allow them.

    On a chat route they are in the request body and in the local variables of
    the frames that handled them, so both go.
    """
    if _policy.ai_content or not _is_chat_request(event):
        return
    request = event["request"]
    if request.get("data"):
        request["data"] = AI_CONTENT_FILTERED
    for exception in (event.get("exception") or {}).get("values") or ():
        frames = ((exception or {}).get("stacktrace") or {}).get("frames") or ()
        for frame in frames:
            if isinstance(frame, dict) and frame.get("vars"):
                frame["vars"] = {}


def _scrub_span(span: dict[str, Any]) -> None:
    data = span.get("data")
    description = span.get("description")
    if isinstance(description, str):
        if span.get("op") == "db" and _is_mongo(data):
            span["description"] = mongo_command_shape(description)
        else:
            span["description"] = scrub_text(description)
    for part in ("data", "tags"):
        if isinstance(span.get(part), dict):
            _scrub_mapping(span[part], 1)


def _mask_parameters(
    holder: dict[str, Any], text_key: str, values: Any, keys: list[Any]
) -> None:
    """Mask the arguments of a log message whose formatted text held a secret.

    The message template and its arguments travel beside the formatted text
    (``logentry.params`` of an event, ``sentry.message.parameter.N`` of a log),
    and a bare token is a secret only by its place in the text: ``token=%s``.
    An argument that was in the text and is gone once the text is scrubbed was
    a secret, wherever else it goes.
    """
    text = holder.get(text_key)
    if not isinstance(text, str) or not keys:
        return
    clean = scrub_text(text)
    holder[text_key] = clean
    if clean == text:
        return
    for key in keys:
        shown = str(values[key])
        if shown and shown in text and shown not in clean:
            values[key] = FILTERED


def _scrub_log_entry(event: dict[str, Any]) -> None:
    entry = event.get("logentry")
    if isinstance(entry, dict) and isinstance(entry.get("params"), list):
        params = entry["params"]
        _mask_parameters(entry, "formatted", params, list(range(len(params))))


def _scrub_event(event: dict[str, Any]) -> dict[str, Any]:
    _drop_chat_content(event)
    _scrub_log_entry(event)
    for key, item in event.items():
        if key in _SKIPPED_EVENT_KEYS:
            continue
        if key == "spans" and isinstance(item, list):
            for span in item:
                if isinstance(span, dict):
                    _scrub_span(span)
            continue
        if key == "breadcrumbs" and isinstance(item, dict):
            crumbs = item.get("values")
            if isinstance(crumbs, list):
                item["values"] = [_scrub_breadcrumb(crumb) for crumb in crumbs]
                continue
        event[key] = _scrub_item(key, item, 0)
    return event


def _scrub_breadcrumb(crumb: Any) -> Any:
    if not isinstance(crumb, dict):
        return _scrub_item("breadcrumb", crumb, 0)
    message = crumb.get("message")
    query = crumb.get("category") == "query" and isinstance(message, str)
    if query and _is_mongo(crumb.get("data")):
        crumb["message"] = mongo_command_shape(message)
    return _scrub_mapping(crumb, 0)


def _never_raise(hook: Callable[..., Any]) -> Callable[..., Any]:
    """A hook that fails drops what it was given instead of sending it raw."""

    @functools.wraps(hook)
    def guarded(payload: Any, hint: Any) -> Any:
        try:
            return hook(payload, hint)
        except Exception:
            return None

    return guarded


@_never_raise
def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    return _scrub_event(event)


@_never_raise
def before_send_transaction(
    event: dict[str, Any], hint: dict[str, Any]
) -> dict[str, Any]:
    return _scrub_event(event)


@_never_raise
def before_send_log(record: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    attributes = record.get("attributes")
    if isinstance(attributes, dict):
        parameters = [key for key in attributes if key.startswith(LOG_PARAMETER_PREFIX)]
        _mask_parameters(record, "body", attributes, parameters)
    return _scrub_mapping(record, 0)


@_never_raise
def before_send_metric(metric: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    return _scrub_mapping(metric, 0)
