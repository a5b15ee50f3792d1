"""Log records stamped with request id and user id; JSON lines in production."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from printz.observability.context import current_request_id, current_user_id
from printz.observability.scrub import scrub_text

CONSOLE_FORMAT = (
    "%(asctime)s %(levelname)-7s %(name)s [req=%(request_id)s user=%(user_id)s] "
    "%(message)s"
)


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` and ``user_id`` to every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        record.user_id = current_user_id() or "-"
        return True


class JSONLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub_text(record.getMessage()),
            "request_id": getattr(record, "request_id", "-"),
            "user_id": getattr(record, "user_id", "-"),
        }
        if record.exc_info:
            line["exception"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


def configure_logging(settings: Mapping[str, Any]) -> None:
    """Send ``printz.*`` records to stderr in the environment's format, once."""
    root = logging.getLogger("printz")
    if any(getattr(h, "_printz", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._printz = True  # type: ignore[attr-defined]
    handler.addFilter(RequestContextFilter())
    if settings["PRINTZ_ENV"] == "production":
        handler.setFormatter(JSONLineFormatter())
    else:
        handler.setFormatter(ScrubbingFormatter(CONSOLE_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for plugin_root in ("plugins",):
        logging.getLogger(plugin_root).addHandler(handler)
        logging.getLogger(plugin_root).setLevel(logging.INFO)
