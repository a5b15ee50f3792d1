"""Liveness, readiness and the Sentry check route."""

from __future__ import annotations

import logging

from flask import Flask, jsonify

from printz.extensions import mongo, redis_store
from printz.observability.errors import error_response

log = logging.getLogger(__name__)


class SentryCheckError(RuntimeError):
    """Raised on purpose by /debug-sentry to prove errors reach Sentry."""


def healthz():
    return jsonify({"status": "ok"})


def readyz():
    failed = {}
    for name, check in (("mongo", mongo.ping), ("redis", redis_store.ping)):
        try:
            check()
        except Exception as error:
            failed[name] = type(error).__name__
    if failed:
        names = sorted(failed)
        log.warning("not ready: %s", ", ".join(names))
        return error_response(
            503,
            "not_ready",
            f"Not ready: {', '.join(names)} not answering.",
            extra={"failed": names},
        )
    return jsonify({"status": "ready", "checks": {"mongo": "ok", "redis": "ok"}})


def debug_sentry():
    raise SentryCheckError("Sentry check: this error was raised on purpose")


def init_app(app: Flask) -> None:
    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
    if app.config["PRINTZ_ENV"] != "production":
        app.add_url_rule(
            "/debug-sentry",
            "debug_sentry",
            debug_sentry,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        )
