"""The instrument step: Sentry is set up before the app object exists.

What each option is for, and the options left out on purpose:

- ``send_default_pii`` is not passed: sentry-sdk 2.75 deprecates it (a
  DeprecationWarning at init) and its default, off, is what Printz wants: no
  client IP, no cookies, no user guessed by the Flask integration.
- ``data_collection`` is not passed either: any dict there, even ``{}``, switches
  the SDK to permissive defaults and turns its event scrubber off.
- ``stream_gen_ai_spans`` is off so AI spans stay in their transaction with
  their own status: the streamed form reduces every status but ``ok`` to
  ``error``, and a customer pressing stop is not a failure.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import sentry_sdk
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.logging import (
    LoggingIntegration,
    ignore_logger,
    ignore_logger_for_sentry_logs,
)
from sentry_sdk.integrations.openai import OpenAIIntegration
from sentry_sdk.integrations.redis import RedisIntegration

from printz.observability import scrub, sdk_fixes, serialize
from printz.observability.release import release_name
from printz.observability.sampling import traces_sampler

log = logging.getLogger(__name__)

# Redis keys the catalogue caches under: their GET/SET become cache spans.
CACHE_PREFIXES = ["catalog:"]
DEFAULT_MODEL_URL = "https://api.openai.com/v1"


def sentry_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments given to sentry_sdk.init, built from settings."""
    options: dict[str, Any] = {
        "dsn": settings["SENTRY_DSN"],
        "environment": settings["SENTRY_ENVIRONMENT"] or settings["PRINTZ_ENV"],
        "release": settings["SENTRY_RELEASE"] or release_name(),
        "traces_sampler": traces_sampler(settings["SENTRY_TRACES_SAMPLE_RATE"]),
        "trace_propagation_targets": propagation_targets(settings),
        # Bodies up to 10 kB are attached (scrubbed) so a bad request is visible.
        "max_request_body_size": "medium",
        # A Sentry outage must cost memory, never requests: past this many
        # envelopes waiting to be sent, new ones are dropped.
        "transport_queue_size": settings["SENTRY_TRANSPORT_QUEUE_SIZE"],
        # gzip at the SDK's default level 9 costs several times the CPU of
        # level 1 for a few percent smaller envelopes; on a busy worker that
        # CPU is taken from requests. (Read from _experiments in 2.75.)
        "_experiments": {"transport_compression_level": 1},
        "in_app_include": ["printz", "plugins"],
        "enable_logs": True,
        "stream_gen_ai_spans": False,
        "before_send": scrub.before_send,
        "before_send_transaction": scrub.before_send_transaction,
        "before_send_log": scrub.before_send_log,
        "before_send_metric": scrub.before_send_metric,
        "integrations": [
            FlaskIntegration(transaction_style="url"),
            sdk_fixes.PyMongoIntegration(),
            RedisIntegration(cache_prefixes=CACHE_PREFIXES),
            LoggingIntegration(
                level=logging.INFO,
                event_level=logging.ERROR,
                sentry_logs_level=logging.INFO,
            ),
        ],
        # The chat path is traced by hand (printz.observability.ai) so that
        # streaming and cancellation are measured right.
        "disabled_integrations": [OpenAIIntegration()],
    }
    if settings["SENTRY_PROFILE_SESSION_SAMPLE_RATE"] > 0:
        options["profile_session_sample_rate"] = settings[
            "SENTRY_PROFILE_SESSION_SAMPLE_RATE"
        ]
        options["profile_lifecycle"] = "trace"
    spotlight = settings["SENTRY_SPOTLIGHT"]
    if spotlight and settings["PRINTZ_ENV"] != "production":
        # Without a DSN the SDK turns personal data on for Spotlight; it is a
        # sidecar on the developer's machine, and the scrubber still runs.
        options["spotlight"] = True if spotlight.lower() == "true" else spotlight
    return options


def propagation_targets(settings: Mapping[str, Any]) -> list[str]:
    """URL patterns that may receive ``sentry-trace`` and ``baggage`` headers.

    Only Printz's own services, named in ``SENTRY_TRACE_PROPAGATION_TARGETS``
    as ``host`` or ``host:port``; none by default. A name that would match the
    model server is refused: trace ids and baggage never go to a third party.
    """
    model_url = settings.get("OPENAI_BASE_URL") or DEFAULT_MODEL_URL
    targets = []
    for host in settings.get("SENTRY_TRACE_PROPAGATION_TARGETS") or ():
        pattern = _host_pattern(host)
        if re.search(pattern, model_url):
            log.warning(
                "SENTRY_TRACE_PROPAGATION_TARGETS: %s is the model server; "
                "trace headers are not sent there",
                host,
            )
            continue
        targets.append(pattern)
    return targets


def _host_pattern(host: str) -> str:
    parts = urlsplit(f"//{host.strip()}")
    name = re.escape(parts.hostname or host.strip())
    port = rf":{parts.port}" if parts.port else r"(?::\d+)?"
    return rf"^https?://{name}{port}(?:[/?#]|$)"


def _stop_previous_client() -> None:
    """An app built without a DSN sends nothing, whatever an earlier one set up."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)


def init_sentry(settings: Mapping[str, Any]) -> bool:
    """Start the Sentry SDK; a bad Sentry setting is logged and never fatal."""
    scrub.configure(
        allow_ai_content=settings["SENTRY_SEND_AI_CONTENT"],
        allow_email=settings["SENTRY_SEND_USER_EMAIL"],
    )
    if not settings["SENTRY_DSN"] and not settings["SENTRY_SPOTLIGHT"]:
        _stop_previous_client()
        log.info("Sentry is off: SENTRY_DSN is not set")
        return False
    # The development server logs, as text, every exception that escapes a
    # response; the WSGI middleware has reported it already.
    ignore_logger("werkzeug")
    # One access line per request would be one Sentry log and breadcrumb per
    # request, traced or not (a tenth of a worker's time under load); the
    # transaction already says the same, and the line stays in gunicorn's own
    # log. The SDK keeps one list for breadcrumbs and events, one for logs.
    ignore_logger("gunicorn.access")
    ignore_logger_for_sentry_logs("gunicorn.access")
    try:
        sentry_sdk.init(**sentry_options(settings))
        sdk_fixes.close_redis_spans_on_error()
        sdk_fixes.quiet_sdk_logger()
        serialize.install()
    except Exception:
        log.warning("Sentry could not start; serving without it", exc_info=True)
        return False
    log.info(
        "Sentry is on for environment %s, release %s",
        settings["SENTRY_ENVIRONMENT"] or settings["PRINTZ_ENV"],
        settings["SENTRY_RELEASE"] or release_name(),
    )
    return True
