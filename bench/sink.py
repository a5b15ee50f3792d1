"""The test suite's Sentry ingest endpoint, made fit for minutes of load.

``tests.support.sentry_sink.SentrySink`` keeps every envelope, which is what a
test wants and, at a thousand transactions a second, gigabytes. The bench's
sink counts what arrives and keeps only the few facts the reports need.

It also answers on keep-alive connections (HTTP/1.1), as sentry.io does: the
suite's HTTP/1.0 handler makes the SDK open a TCP connection per envelope,
a cost production never pays and which would be charged to Printz here.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.support.sentry_sink import (
    Envelope,
    SentrySink,
    _IngestHandler,
    _SinkServer,
)

log = logging.getLogger(__name__)

AGENT_OP = "gen_ai.invoke_agent"
CONVERSATION_KEY = "gen_ai.conversation.id"


class _KeepAliveIngestHandler(_IngestHandler):
    protocol_version = "HTTP/1.1"
    # The reply's headers and body are two writes: with Nagle on, the body
    # waits for the SDK's delayed ACK of the headers, about 40 ms an envelope,
    # and each worker's sender thread could pass no more than ~22 a second.
    disable_nagle_algorithm = True


@dataclass
class Arrivals:
    """What reached the sink: item counts, AI traces, what the SDK dropped."""

    items: Counter = field(default_factory=Counter)
    envelopes: int = 0
    transactions: int = 0
    # Conversation ids of transactions that carry an agent span: one per
    # traced chat turn.
    ai_conversations: list[str] = field(default_factory=list)
    # (reason, category) -> quantity, from the SDK's client reports.
    discarded: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "envelopes": self.envelopes,
            "items": dict(self.items),
            "transactions": self.transactions,
            "ai_traces": len(self.ai_conversations),
            "discarded": {f"{r}/{c}": n for (r, c), n in self.discarded.items()},
        }


class CountingSink(SentrySink):
    """A ``SentrySink`` that counts envelopes instead of keeping them."""

    def __init__(self) -> None:
        super().__init__()
        self._count_lock = threading.Lock()
        self._arrivals = Arrivals()

    def start(self) -> CountingSink:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _SinkServer(("127.0.0.1", 0), _KeepAliveIngestHandler, sink=self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="bench-sentry-sink",
            daemon=True,
        )
        self._thread.start()
        return self

    def take(self) -> Arrivals:
        """What arrived since the last call, and start counting afresh."""
        with self._count_lock:
            arrivals, self._arrivals = self._arrivals, Arrivals()
        return arrivals

    def peek(self) -> Arrivals:
        with self._count_lock:
            return self._arrivals

    def _record(self, envelope: Envelope) -> None:
        with self._count_lock:
            arrivals = self._arrivals
            arrivals.envelopes += 1
            for item in envelope.items:
                arrivals.items[item.type] += 1
                if item.type == "transaction":
                    arrivals.transactions += 1
                    conversation = _agent_conversation(item.json)
                    if conversation is not None:
                        arrivals.ai_conversations.append(conversation)
                elif item.type == "client_report" and isinstance(item.json, dict):
                    for entry in item.json.get("discarded_events") or []:
                        key = (entry.get("reason"), entry.get("category"))
                        arrivals.discarded[key] += entry.get("quantity", 0)


def _agent_conversation(transaction: Any) -> str | None:
    """The conversation of a transaction holding an agent span, else None."""
    if not isinstance(transaction, dict):
        return None
    spans = [transaction.get("contexts", {}).get("trace", {})]
    spans.extend(transaction.get("spans") or [])
    for span in spans:
        if span.get("op") == AGENT_OP:
            return str((span.get("data") or {}).get(CONVERSATION_KEY, "?"))
    return None
