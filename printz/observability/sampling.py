"""Which requests are traced: decided from the WSGI path.

In sentry-sdk 2.x the sampler runs before Flask has matched a route (the
transaction is still "generic WSGI request"), so the path is all there is.
Health checks are never traced, even when the caller's trace header asks for
it: a load balancer polling every second would drown everything else. The chat
route is always traced (unless an incoming trace says not to sample): its AI
spans and costs are what the AI views are made of.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from printz.observability.context import HEALTH_PATHS

CHAT_PATH = "/api/chat"


def is_chat_path(path: str) -> bool:
    return path == CHAT_PATH or path.startswith(CHAT_PATH + "/")


def traces_sampler(base_rate: float) -> Callable[[dict[str, Any]], float]:
    """The ``traces_sampler`` for sentry_sdk.init, with the settings' base rate."""

    def sample(context: dict[str, Any]) -> float:
        environ = context.get("wsgi_environ") or {}
        path = environ.get("PATH_INFO", "")
        if path in HEALTH_PATHS:
            return 0.0
        parent = context.get("parent_sampled")
        if parent is not None:
            return 1.0 if parent else 0.0
        if is_chat_path(path):
            return 1.0
        return base_rate

    return sample
