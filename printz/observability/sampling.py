"""Which requests are traced: decided from the WSGI path.

In sentry-sdk 2.x the sampler runs before Flask has matched a route (the
transaction is still "generic WSGI request"), so the path is all there is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NEVER_TRACED = frozenset({"/healthz", "/readyz"})
ALWAYS_TRACED_PREFIXES = ("/api/chat",)


def traces_sampler(base_rate: float) -> Callable[[dict[str, Any]], float]:
    def sample(context: dict[str, Any]) -> float:
        environ = context.get("wsgi_environ") or {}
        path = environ.get("PATH_INFO", "")
        if path in NEVER_TRACED:
            return 0.0
        parent = context.get("parent_sampled")
        if parent is not None:
            return 1.0 if parent else 0.0
        if path.startswith(ALWAYS_TRACED_PREFIXES):
            return 1.0
        return base_rate

    return sample
