"""Log records stamped with request id and user id; JSON lines in production.

Every record made while a request is served carries ``request_id`` and, once the
customer is known, ``user_id``: a record factory adds them, so they reach every
handler, Sentry's included (they become attributes of Sentry Logs and data of
breadcrumbs). Whatever is written is scrubbed like Sentry events are. A caller
must therefore not pass ``extra={"request_id": ...}``: logging refuses to
overwrite an attribute the record already has.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sentry_sdk

from printz.observability.context import current_request_id, current_user_id
from printz.observability.scrub import scrub_text

# flask-limiter's own logger says when rate limiting falls back to per-process
# counters, which an operator must read beside Printz's records.
LOGGER_ROOTS = ("printz", "plugins", "flask-limiter")
CONSOLE_FORMAT = (
    "%(asctime)s %(levelname)-7s %(name)s [req=%(request_id)s user=%(user_id)s] "
    "%(message)s"
)
_UNKNOWN = {"request_id": "-", "user_id": "-"}


def _stamping_factory(make_record):
    def make_stamped_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        request_id = current_request_id()
        if request_id is not None:
            record.request_id = request_id
            user_id = current_user_id()
            if user_id is not None:
                record.user_id = user_id
        return record

    make_stamped_record.printz_stamping = True  # type: ignore[attr-defined]
    return make_stamped_record


def stamp_records() -> None:
    """Make every new log record carry the request id and user id (once)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "printz_stamping", False):
        logging.setLogRecordFactory(_stamping_factory(current))


class ConsoleFormatter(logging.Formatter):
    """One readable, scrubbed line per record, for a developer's terminal."""

    def __init__(self) -> None:
        super().__init__(CONSOLE_FORMAT, defaults=_UNKNOWN)

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


class JSONLineFormatter(logging.Formatter):
    """One JSON object per line, for a log collector."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub_text(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
            "user_id": getattr(record, "user_id", None),
            "trace_id": _trace_id(),
        }
        if record.exc_info:
            line["exception"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


def _trace_id() -> str | None:
    """The Sentry trace of the work being logged, to jump from a log to Sentry."""
    span = sentry_sdk.get_current_span()
    return span.trace_id if span is not None else None


def configure_logging(settings: Mapping[str, Any]) -> None:
    """Send ``printz.*`` and ``plugins.*`` records to stderr, once per process."""
    stamp_records()
    handler = _printz_handler()
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.printz = True  # type: ignore[attr-defined]
    if settings["PRINTZ_ENV"] == "production":
        handler.setFormatter(JSONLineFormatter())
    else:
        handler.setFormatter(ConsoleFormatter())
    for root in LOGGER_ROOTS:
        logger = logging.getLogger(root)
        if handler not in logger.handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _printz_handler() -> logging.Handler | None:
    for handler in logging.getLogger(LOGGER_ROOTS[0]).handlers:
        if getattr(handler, "printz", False):
            return handler
    return None


class ScrubbedRecords(logging.Filter):
    """Scrub the text of records from loggers Printz does not format itself.

    gunicorn logs a malformed request's raw request line, query string and all,
    through its own handlers; the line is scrubbed before any of them sees it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub_text(record.getMessage())
        record.args = None
        return True


def scrub_logger(name: str) -> None:
    """Scrub every record of logger ``name`` (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ScrubbedRecords) for f in logger.filters):
        logger.addFilter(ScrubbedRecords())
