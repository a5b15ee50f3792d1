"""The Sentry sink decodes what the real SDK sends, and can simulate an outage."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import zlib

import pytest

from tests.support.sentry_sink import SentrySink, decode_body, parse_envelope

# Runs in a child interpreter so sentry_sdk.init leaves no global client behind.
SDK_SCRIPT = textwrap.dedent(
    """
    import sys

    import sentry_sdk
    from sentry_sdk import logger as sentry_logger

    sentry_sdk.init(
        dsn=sys.argv[1],
        traces_sample_rate=1.0,
        enable_logs=True,
        default_integrations=False,
    )
    try:
        {}["order_total"]
    except KeyError:
        sentry_sdk.capture_exception()
    sentry_sdk.capture_message("printer queue is long")
    with sentry_sdk.start_transaction(name="quote_price", op="task"):
        with sentry_sdk.start_span(op="db", name="load prices"):
            pass
    sentry_logger.info("quote computed for {order}", order="P-17")
    sentry_sdk.flush(timeout=10)
    """
)


def run_sdk(dsn: str) -> None:
    subprocess.run([sys.executable, "-c", SDK_SCRIPT, dsn], check=True, timeout=60)


def post(sink: SentrySink, body: bytes, headers=None, path="/api/1/envelope/"):
    """POST to the sink; return (status, decoded JSON reply)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{sink.port}{path}",
        data=body,
        headers=headers or {},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


ENVELOPE = (
    b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n'
    b'{"type":"event","length":27}\n'
    b'{"message":"line\\nbreaks"}\n'
    b'{"type":"attachment"}\n'
    b"no length, to end of line\n"
)


@pytest.fixture
def sink():
    with SentrySink() as running:
        yield running


def test_dsn_points_at_the_running_sink(sink):
    assert sink.dsn == f"http://publickey@127.0.0.1:{sink.port}/1"


def test_real_sdk_error_message_transaction_and_log_are_decoded(sink):
    run_sdk(sink.dsn)

    sink.wait_for(lambda s: s.events() and s.transactions() and s.logs())
    exception = sink.events()[0]["exception"]["values"][-1]
    assert exception["type"] == "KeyError"
    assert "order_total" in exception["value"]
    messages = [event.get("message") for event in sink.events()]
    assert "printer queue is long" in messages
    transaction = sink.transactions()[0]
    assert transaction["transaction"] == "quote_price"
    assert [span["op"] for span in transaction["spans"]] == ["db"]
    assert sink.logs()[0]["body"] == "quote computed for P-17"


def test_real_sdk_compresses_with_gzip_when_brotli_is_missing(sink):
    try:
        import brotli  # noqa: F401
    except ImportError:
        expected = "gzip"
    else:
        expected = "br"

    run_sdk(sink.dsn)

    sink.wait_for(lambda s: s.envelopes)
    assert {env.content_encoding for env in sink.envelopes} == {expected}


def test_raw_text_holds_everything_sent(sink):
    run_sdk(sink.dsn)

    sink.wait_for(lambda s: s.logs())
    assert "order_total" in sink.raw_text()
    assert "P-17" in sink.raw_text()


def test_gzip_envelope_is_decoded(sink):
    status, reply = post(sink, gzip.compress(ENVELOPE), {"Content-Encoding": "gzip"})

    assert (status, reply) == (200, {"id": "9ec79c33ec9942ab8353589fcb2e04dc"})
    (envelope,) = sink.envelopes
    assert envelope.raw == ENVELOPE
    assert [item.type for item in envelope.items] == ["event", "attachment"]


def test_items_use_length_when_given_and_the_line_otherwise():
    envelope = parse_envelope(ENVELOPE)

    event, attachment = envelope.items
    assert event.json == {"message": "line\nbreaks"}
    assert attachment.payload == b"no length, to end of line"
    assert attachment.json is None


def test_deflate_and_identity_bodies_are_decoded():
    assert decode_body(zlib.compress(ENVELOPE), "deflate") == ENVELOPE
    assert decode_body(ENVELOPE, None) == ENVELOPE


def test_undecodable_body_is_rejected(sink):
    status, _ = post(sink, b"not gzip", {"Content-Encoding": "gzip"})

    assert status == 400
    assert sink.envelopes == []


def test_legacy_store_endpoint_is_read_as_an_event(sink):
    body = json.dumps({"event_id": "abc", "message": "from store"}).encode()

    status, reply = post(sink, body, path="/api/1/store/")

    assert (status, reply) == (200, {"id": "abc"})
    assert sink.events() == [{"event_id": "abc", "message": "from store"}]


def test_error_500_mode_answers_500_but_records(sink):
    sink.mode = "error_500"

    status, _ = post(sink, ENVELOPE)

    assert status == 500
    assert len(sink.events()) == 1


def test_unknown_mode_is_refused(sink):
    with pytest.raises(ValueError, match="error_500"):
        sink.mode = "down"


def test_hang_mode_holds_the_request_until_the_sink_stops():
    sink = SentrySink().start()
    sink.mode = "hang"
    outcome = []
    client = threading.Thread(
        target=lambda: outcome.append(post(sink, ENVELOPE)), daemon=True
    )
    client.start()
    sink.wait_for(lambda s: s.envelopes)
    time.sleep(0.3)
    assert outcome == []

    started = time.monotonic()
    sink.stop()
    client.join(timeout=5)

    assert time.monotonic() - started < 5
    assert not client.is_alive()


def test_clear_forgets_what_arrived(sink):
    post(sink, ENVELOPE)

    sink.clear()

    assert sink.envelopes == []
    assert sink.raw_text() == ""


def test_wait_for_reports_what_arrived_when_it_times_out(sink):
    post(sink, ENVELOPE)

    with pytest.raises(AssertionError) as failure:
        sink.wait_for(lambda s: s.transactions(), timeout=0.2)

    assert "1 envelope(s)" in str(failure.value)
    assert "1 attachment, 1 event" in str(failure.value)
    assert "events: ['line\\nbreaks']" in str(failure.value)
