"""``flask printz sentry-check``: does the configured DSN accept what Printz sends?

The command builds a test error and a test transaction with the app's own Sentry
options (scrubbing, release, environment), then posts them to the DSN itself
rather than through the SDK's background transport, which drops failures
silently: the ingest endpoint's answer for each one is what gets printed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
import sentry_sdk
from flask import current_app
from flask.cli import with_appcontext
from sentry_sdk.consts import EndpointType
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport
from sentry_sdk.utils import Dsn

from printz.instrument import sentry_options

TIMEOUT_S = 10.0


class SentryCheckError(RuntimeError):
    """Raised on purpose by ``flask printz sentry-check``."""


class CheckNotPossible(RuntimeError):
    """Sentry is not configured, so there is nothing to check."""


@dataclass(frozen=True)
class Delivery:
    """What the ingest endpoint answered for one item."""

    kind: str
    event_id: str | None
    accepted: bool
    detail: str


class _KeepEnvelopes(Transport):
    """A transport that keeps envelopes for the check to post itself."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


def run_sentry_check(
    settings: Mapping[str, Any], timeout: float = TIMEOUT_S
) -> list[Delivery]:
    """Send a test error and a test transaction; what the DSN said of each."""
    dsn = settings.get("SENTRY_DSN")
    if not dsn:
        raise CheckNotPossible("SENTRY_DSN is not set: Printz sends nothing to Sentry")
    options = sentry_options(settings)
    options.pop("spotlight", None)
    options["transport"] = _KeepEnvelopes
    client = sentry_sdk.Client(**options)
    try:
        with sentry_sdk.isolation_scope(), sentry_sdk.new_scope() as scope:
            scope.set_client(client)
            scope.set_tag("printz.check", "sentry-check")
            _send_test_error(scope)
            _send_test_transaction(scope)
        envelopes = [
            envelope
            for envelope in client.transport.envelopes
            if _kind_of(envelope) in ("error", "transaction")
        ]
    finally:
        client.close(timeout=0)
    return [_post(envelope, Dsn(dsn), timeout) for envelope in envelopes]


def _send_test_error(scope: sentry_sdk.Scope) -> None:
    try:
        raise SentryCheckError("Printz sentry-check: a test error sent on purpose")
    except SentryCheckError as error:
        scope.capture_exception(error)


def _send_test_transaction(scope: sentry_sdk.Scope) -> None:
    transaction = scope.start_transaction(
        name="printz sentry-check", op="printz.check", source="task", sampled=True
    )
    with transaction, transaction.start_child(op="printz.check", name="a test span"):
        time.sleep(0.01)


def _kind_of(envelope: Envelope) -> str:
    if envelope.get_transaction_event() is not None:
        return "transaction"
    if envelope.get_event() is not None:
        return "error"
    return envelope.items[0].type if envelope.items else "empty"


def _post(envelope: Envelope, dsn: Dsn, timeout: float) -> Delivery:
    auth = dsn.to_auth()
    kind = _kind_of(envelope)
    event_id = envelope.headers.get("event_id")
    request = urllib.request.Request(  # noqa: S310 - the configured DSN's URL
        auth.get_api_url(EndpointType.ENVELOPE),
        data=envelope.serialize(),
        headers={
            "Content-Type": "application/x-sentry-envelope",
            "X-Sentry-Auth": auth.to_header(),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = _json(response.read())
            event_id = answer.get("id") or event_id
            return Delivery(kind, event_id, True, f"accepted (HTTP {response.status})")
    except urllib.error.HTTPError as error:
        body = error.read(200).decode("utf-8", "replace").strip()
        return Delivery(kind, event_id, False, f"rejected (HTTP {error.code}: {body})")
    except TimeoutError:
        return Delivery(kind, event_id, False, f"no answer within {timeout:g}s")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return Delivery(kind, event_id, False, f"could not be sent ({reason})")


def _json(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _where(settings: Mapping[str, Any]) -> str:
    dsn = Dsn(settings["SENTRY_DSN"])
    options = sentry_options(settings)
    return (
        f"Sentry project {dsn.project_id} at {dsn.scheme}://{dsn.netloc} "
        f"(environment {options['environment']}, release {options['release']})"
    )


@click.command("sentry-check")
@click.option("--timeout", default=TIMEOUT_S, show_default=True, help="seconds")
@with_appcontext
def sentry_check_command(timeout: float) -> None:
    """Send a test error and a test transaction; say whether Sentry took them."""
    settings = current_app.config
    try:
        deliveries = run_sentry_check(settings, timeout)
    except CheckNotPossible as problem:
        raise click.ClickException(str(problem)) from None
    click.echo(_where(settings))
    for delivery in deliveries:
        click.echo(f"{delivery.kind:<12} {delivery.event_id}  {delivery.detail}")
    if not deliveries or not all(delivery.accepted for delivery in deliveries):
        raise click.ClickException("Sentry did not accept everything Printz sent")
    click.echo("Sentry accepted the test error and the test transaction.")
