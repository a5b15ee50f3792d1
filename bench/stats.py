"""Percentiles, medians and spreads, as every report states them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` from 0 to 1), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Median and spread of one figure over the rounds of a benchmark.

    ``spread`` is (max - min) / median: how far apart the rounds were, the
    first thing to look at before believing a difference between variants.
    """
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "spread": None, "n": 0}
    median = statistics.median(present)
    low, high = min(present), max(present)
    spread = (high - low) / median if median else None
    return {
        "median": median,
        "min": low,
        "max": high,
        "spread": spread,
        "n": len(present),
        "rounds": list(values),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator
