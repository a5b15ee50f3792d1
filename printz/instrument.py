"""The instrument step: Sentry is set up before the app object exists."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.openai import OpenAIIntegration
from sentry_sdk.integrations.pymongo import PyMongoIntegration
from sentry_sdk.integrations.redis import RedisIntegration

from printz.observability import scrub
from printz.observability.release import release_name
from printz.observability.sampling import traces_sampler

log = logging.getLogger(__name__)

CACHE_PREFIXES = ["catalog:"]


def sentry_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments given to sentry_sdk.init, built from settings."""
    production = settings["PRINTZ_ENV"] == "production"
    options: dict[str, Any] = {
        "dsn": settings["SENTRY_DSN"],
        "environment": settings["SENTRY_ENVIRONMENT"] or settings["PRINTZ_ENV"],
        "release": settings["SENTRY_RELEASE"] or release_name(),
        "traces_sampler": traces_sampler(settings["SENTRY_TRACES_SAMPLE_RATE"]),
        "trace_propagation_targets": [r"^/", r"^https?://(127\.0\.0\.1|localhost)"],
        "max_request_body_size": "medium",
        "enable_logs": True,
        "before_send": scrub.before_send,
        "before_send_transaction": scrub.before_send_transaction,
        "before_breadcrumb": scrub.before_breadcrumb,
        "before_send_log": scrub.before_send_log,
        "default_integrations": True,
        "integrations": [
            FlaskIntegration(transaction_style="url"),
            PyMongoIntegration(),
            RedisIntegration(cache_prefixes=CACHE_PREFIXES),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        "disabled_integrations": [OpenAIIntegration()],
    }
    if settings["SENTRY_PROFILE_SESSION_SAMPLE_RATE"] > 0:
        options["profile_session_sample_rate"] = settings[
            "SENTRY_PROFILE_SESSION_SAMPLE_RATE"
        ]
        options["profile_lifecycle"] = "trace"
    spotlight = settings["SENTRY_SPOTLIGHT"]
    if spotlight and not production:
        options["spotlight"] = True if spotlight.lower() == "true" else spotlight
    return options


def init_sentry(settings: Mapping[str, Any]) -> bool:
    """Start the Sentry SDK; a bad Sentry setting is logged and never fatal."""
    if not settings["SENTRY_DSN"] and not settings["SENTRY_SPOTLIGHT"]:
        log.info("Sentry is off: SENTRY_DSN is not set")
        return False
    scrub.configure(allow_ai_content=settings["SENTRY_SEND_AI_CONTENT"])
    try:
        sentry_sdk.init(**sentry_options(settings))
    except Exception:
        log.warning("Sentry could not start; serving without it", exc_info=True)
        return False
    log.info("Sentry is on for environment %s", settings["PRINTZ_ENV"])
    return True
