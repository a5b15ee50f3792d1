"""A response body that keeps its request's Sentry trace open while it streams.

The Sentry WSGI middleware finishes the request's transaction as soon as the
view has returned its response, before the first byte of a streamed body is
sent: in sentry-sdk 2.75 the transaction is a ``with`` block around the call of
the app (``SentryWsgiMiddleware.__call__``), and ``_ScopedResponse``, which
iterates the body afterwards, only re-enters the request's isolation scope.
Spans opened while the body runs would belong to a finished transaction and be
dropped, and the transaction's duration would say nothing of the stream.

``TracedBody`` wraps such a body and

- holds the request's transaction open until the body ends, so its duration
  covers the stream and spans opened meanwhile are sent with it, in the same
  trace as the request;
- runs each step of the body (and its ``close``) in the request's isolation
  scope and in a current scope whose active span is the one given, so database
  spans, logs and errors of the stream link to it;
- reports how the body ended, exactly once: ``ok`` when it was exhausted,
  ``internal_error`` when it raised (the exception goes on to the server),
  ``cancelled`` when the server closed it early because the client went away.

Known shortcoming: the hold marks the transaction as finished (it sets its end
timestamp) so that the middleware's ``finish()`` returns early, as
``Transaction.finish`` does for a transaction already finished; the hold then
clears the mark and finishes it for real. It relies on that early return
(``if self.timestamp is not None`` in sentry_sdk/tracing.py), which
test_observability_ai checks against the installed SDK. sentry-sdk offers no
public way to extend a WSGI transaction; a span-streaming SDK
(``trace_lifecycle="stream"``) would remove the need for it. A body that the
server neither exhausts nor closes (a WSGI server bug) never sends its
transaction; one the view built and then replaced by an error answer ends
when that answer is made.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import sentry_sdk
from flask import after_this_request, has_request_context
from sentry_sdk.consts import SPANSTATUS
from sentry_sdk.scope import use_isolation_scope, use_scope
from sentry_sdk.tracing import Span, Transaction

log = logging.getLogger(__name__)

OK = SPANSTATUS.OK
FAILED = SPANSTATUS.INTERNAL_ERROR
CANCELLED = SPANSTATUS.CANCELLED

# Told how the body ended; may answer the status the request should end with.
EndCallback = Callable[[str, BaseException | None], str | None]


class HeldTransaction:
    """The request's transaction, kept from finishing until ``release``."""

    def __init__(self, transaction: Any) -> None:
        self._transaction: Transaction | None = None
        if (
            isinstance(transaction, Transaction)
            and transaction.sampled
            and transaction.timestamp is None
        ):
            transaction.timestamp = datetime.now(UTC)
            self._transaction = transaction

    @property
    def holding(self) -> bool:
        return self._transaction is not None

    def release(self, outcome: str, scope: sentry_sdk.Scope) -> None:
        """Finish the transaction now, marked with how the stream ended."""
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return
        transaction.timestamp = None
        if outcome != OK:
            transaction.set_status(outcome)
        transaction.finish(scope=scope)


class TracedBody:
    """A WSGI response body iterated inside its request's trace.

    ``span`` becomes the active span while the body runs (the request's own
    span when None). ``on_end(outcome, error)`` is called once when the body
    ends, before the request's transaction is finished, and may return the
    status that transaction ends with (a turn that failed while the stream went
    on to a graceful end, say); an error it raises is logged, never passed to
    the server.
    """

    def __init__(
        self,
        body: Iterable[Any],
        *,
        span: Span | None = None,
        on_end: EndCallback | None = None,
    ) -> None:
        self._body = body
        self._iterator: Iterator[Any] | None = None
        self._on_end = on_end
        self._ended = False
        self._isolation_scope = sentry_sdk.get_isolation_scope()
        current = sentry_sdk.get_current_scope()
        self._scope = current.fork()
        if span is not None:
            self._scope.span = span
        self._held = HeldTransaction(current.transaction)
        if self._held.holding and has_request_context():
            after_this_request(self._unless_answered)

    @property
    def ended(self) -> bool:
        return self._ended

    def __iter__(self) -> TracedBody:
        return self

    def __next__(self) -> Any:
        with self.scopes():
            try:
                if self._iterator is None:
                    self._iterator = iter(self._body)
                return next(self._iterator)
            except StopIteration:
                self._end(OK, None)
                raise
            except BaseException as error:
                self._end(FAILED, error)
                raise

    def close(self) -> None:
        """Called by the WSGI server when the response is done or abandoned."""
        with self.scopes():
            try:
                close = getattr(self._body, "close", None)
                if close is not None:
                    close()
            except BaseException as error:
                self._end(FAILED, error)
                raise
            finally:
                self._end(CANCELLED, None)

    def _unless_answered(self, response: Any) -> Any:
        """A view that built this body, then answered an error instead of it."""
        if response.status_code >= 400 and response.response is not self:
            with self.scopes():
                self._end(FAILED if response.status_code >= 500 else CANCELLED, None)
        return response

    @contextlib.contextmanager
    def scopes(self) -> Iterator[sentry_sdk.Scope]:
        """Enter the request's isolation scope and the body's current scope.

        The SDK's WSGI middleware already runs every step of a body in the
        request's isolation scope; entering it again would fork the current
        scope once more per relayed write, so it is entered only when missing.
        """
        if sentry_sdk.get_isolation_scope() is self._isolation_scope:
            with use_scope(self._scope):
                yield self._scope
            return
        with use_isolation_scope(self._isolation_scope), use_scope(self._scope):
            yield self._scope

    def _end(self, outcome: str, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        final = outcome
        try:
            if self._on_end is not None:
                final = self._on_end(outcome, error) or outcome
        except Exception:
            log.warning("ending the stream's trace failed", exc_info=True)
        finally:
            self._held.release(final, self._scope)
