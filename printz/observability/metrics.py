"""Sentry metrics: counters, gauges and distributions with attributes.

sentry-sdk 2.75 sends them as ``trace_metric`` items linked to the current
trace (``sentry_sdk.metrics.count``, ``gauge`` and ``distribution``); their
attributes pass the scrubber like every other payload.
"""

from __future__ import annotations

import logging
from typing import Any

from sentry_sdk import metrics

log = logging.getLogger(__name__)

METRIC_KINDS = {
    "count": metrics.count,
    "gauge": metrics.gauge,
    "distribution": metrics.distribution,
}


def capture_metric(
    name: str,
    value: float = 1,
    *,
    kind: str = "count",
    unit: str | None = None,
    **attributes: Any,
) -> None:
    """Record one measurement, e.g. ``capture_metric("printz.ai.turns", 1)``.

    ``kind`` is ``count`` (summed), ``gauge`` (last value) or ``distribution``
    (percentiles); ``unit`` is a Sentry unit such as ``second`` or ``usd``.
    Attributes should have few distinct values: a model name, an outcome,
    never a customer or request id.
    """
    record = METRIC_KINDS.get(kind)
    if record is None:
        raise ValueError(
            f"capture_metric kind {kind!r}: use one of {', '.join(METRIC_KINDS)}"
        )
    try:
        record(name, value, unit=unit, attributes=attributes or None)
    except Exception:
        # A metric is never worth a failed request.
        log.debug("metric %s not recorded", name, exc_info=True)
