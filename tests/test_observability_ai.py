"""The AI tracing helpers, through the real app, the real SDK and a real server.

A test route streams an agent turn the way the chat route does: the turn and
its first model call start in the view, the rest happens in the body after the
view has returned. The app is served by werkzeug on a real socket so that a
client going away is noticed as in production: a failed write, then ``close()``
on the body.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from datetime import datetime

import pytest
import sentry_sdk
from flask import Response, stream_with_context
from werkzeug.serving import make_server

from printz.extensions import mongo
from printz.observability import ai
from printz.observability.streaming import HeldTransaction

MODEL = "test-model-2024-01-01"
PRICES = {"test-model": {"input": 2.0, "output": 8.0, "cached_input": 1.0}}
CHUNK_PAUSE = 0.05
USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 200,
    "total_tokens": 1200,
    "prompt_tokens_details": {"cached_tokens": 400},
    "completion_tokens_details": {"reasoning_tokens": 50},
}


class Progress:
    """What the body did, seen from the test thread."""

    def __init__(self) -> None:
        self.chunks_made = 0
        self.finally_ran = threading.Event()


progress = Progress()


def _turn_body(mode: str, trace: ai.AgentTrace, call: ai.ModelCall):
    try:
        yield b"data: start\n\n"
        time.sleep(CHUNK_PAUSE)
        trace.first_token(call)
        yield b"data: first token\n\n"
        trace.chat_usage(call, USAGE)
        trace.end_chat(call, finish_reason="tool_calls", response_model=MODEL)

        with trace.tool_span("search_products", "call_1", {"query": "mugs"}) as tool:
            mongo.db.products.find_one({"slug": "mug"})
            tool.succeed({"items": []})
        yield b"data: tool done\n\n"

        second = trace.start_chat(model=MODEL)
        for _ in range(200 if mode == "abandon" else 4):
            time.sleep(CHUNK_PAUSE)
            progress.chunks_made += 1
            trace.first_token(second)
            yield b"data: more text\n\n"
            if mode == "raise" and progress.chunks_made == 2:
                raise RuntimeError("the model stream broke mid-answer")
        trace.chat_usage(second, {"input_tokens": 1300, "output_tokens": 20})
        trace.end_chat(second, finish_reason="stop")
        yield b"data: [DONE]\n\n"
    finally:
        # Where the chat plugin saves the answer: it must still be traced.
        mongo.db.turns.insert_one({"mode": mode, "chunks": progress.chunks_made})
        progress.finally_ran.set()


def stream_view(mode: str):
    trace = ai.trace_ai_operation(
        "test-agent", model=MODEL, conversation_id="conversation-1"
    )
    trace.start()
    call = trace.start_chat(model=MODEL)
    body = _turn_body(mode, trace, call)
    return Response(ai.ai_stream(stream_with_context(body), trace))


def abandoned_body_view():
    trace = ai.trace_ai_operation("test-agent", model=MODEL)
    ai.ai_stream(iter([b"never sent"]), trace)
    raise RuntimeError("the view failed after building its stream")


def block_view():
    with ai.trace_ai_operation("block-agent", model=MODEL) as trace:
        with trace.start_chat(model=MODEL) as call:
            trace.first_token(call)
            trace.chat_usage(call, {"input_tokens": 10, "output_tokens": 5})
        mongo.db.products.find_one({"slug": "mug"})
    return {"status": trace.status}


@pytest.fixture
def settings(settings):
    settings["PRINTZ_MODEL_PRICES"] = PRICES
    return settings


@pytest.fixture
def app(app):
    global progress
    progress = Progress()
    app.add_url_rule("/api/chat/test-stream/<mode>", "test_stream", stream_view)
    app.add_url_rule("/api/chat/test-block", "test_block", block_view)
    app.add_url_rule("/api/chat/test-unused", "test_unused", abandoned_body_view)
    return app


@pytest.fixture
def live_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def session_cookie(client) -> str:
    return f"printz_session={client.get_cookie('printz_session').value}"


def get_stream(url: str, path: str, cookie: str):
    """GET a stream and read all of it; the cut when the server broke it off."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path, headers={"Cookie": cookie})
    response = connection.getresponse()
    try:
        return response.status, response.read(), None
    except http.client.IncompleteRead as cut:
        return response.status, cut.partial, cut


def abandon_stream(url: str, path: str, cookie: str, chunks: int) -> None:
    """GET a stream, read a few chunks, then hang up like a closed browser tab."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n"
        sock.sendall(request.encode())
        received = b""
        while received.count(b"data:") < chunks:
            received += sock.recv(4096)
        # An abortive close (RST): the server's next write fails at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def the_transaction(sentry_sink, route: str) -> dict:
    def arrived(sink):
        found = [t for t in sink.transactions() if t["transaction"] == route]
        return found[0] if found else None

    return sentry_sink.wait_for(arrived, timeout=10)


def spans_by_op(transaction: dict, op: str) -> list[dict]:
    return [span for span in transaction["spans"] if span["op"] == op]


def seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def duration(item: dict) -> float:
    return seconds(item["timestamp"]) - seconds(item["start_timestamp"])


ROUTE = "/api/chat/test-stream/<mode>"


# -- a stream that completes -----------------------------------------------------


def test_completed_stream_is_one_trace_covering_the_whole_answer(
    customer, live_url, sentry_sink
):
    started = time.monotonic()
    status, body, _ = get_stream(
        live_url, "/api/chat/test-stream/complete", session_cookie(customer)
    )
    streamed_for = time.monotonic() - started

    assert status == 200
    assert body.endswith(b"data: [DONE]\n\n")
    transaction = the_transaction(sentry_sink, ROUTE)
    trace_id = transaction["contexts"]["trace"]["trace_id"]
    assert transaction["contexts"]["trace"]["status"] == "ok"
    assert duration(transaction) >= streamed_for * 0.8
    assert {span["trace_id"] for span in transaction["spans"]} == {trace_id}
    assert transaction["user"]["id"] == customer.user["id"]


def test_completed_stream_nests_model_and_tool_calls_under_the_agent_span(
    customer, live_url, sentry_sink
):
    get_stream(live_url, "/api/chat/test-stream/complete", session_cookie(customer))

    transaction = the_transaction(sentry_sink, ROUTE)
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    chats = spans_by_op(transaction, "gen_ai.chat")
    [tool] = spans_by_op(transaction, "gen_ai.execute_tool")
    assert invoke["description"] == "invoke_agent test-agent"
    assert invoke["parent_span_id"] == transaction["contexts"]["trace"]["span_id"]
    assert invoke["status"] == "ok"
    assert [chat["description"] for chat in chats] == [f"chat {MODEL}"] * 2
    assert tool["description"] == "execute_tool search_products"
    for child in [*chats, tool]:
        assert child["parent_span_id"] == invoke["span_id"]
        assert child["status"] == "ok"
        assert seconds(child["start_timestamp"]) >= seconds(invoke["start_timestamp"])
        assert seconds(child["timestamp"]) <= seconds(invoke["timestamp"])
    assert duration(invoke) >= 5 * CHUNK_PAUSE


def test_work_done_while_streaming_is_traced_inside_the_agent_span(
    customer, live_url, sentry_sink
):
    get_stream(live_url, "/api/chat/test-stream/complete", session_cookie(customer))

    transaction = the_transaction(sentry_sink, ROUTE)
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    [tool] = spans_by_op(transaction, "gen_ai.execute_tool")
    queries = spans_by_op(transaction, "db")
    find = [q for q in queries if '"find":"products"' in q["description"]]
    insert = [q for q in queries if '"insert":"turns"' in q["description"]]
    assert find[0]["parent_span_id"] == tool["span_id"]
    assert insert[0]["parent_span_id"] == invoke["span_id"]


def test_agent_spans_carry_the_gen_ai_attributes(customer, live_url, sentry_sink):
    get_stream(live_url, "/api/chat/test-stream/complete", session_cookie(customer))

    transaction = the_transaction(sentry_sink, ROUTE)
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    first_chat = spans_by_op(transaction, "gen_ai.chat")[0]
    [tool] = spans_by_op(transaction, "gen_ai.execute_tool")
    assert invoke["data"]["gen_ai.operation.name"] == "invoke_agent"
    assert invoke["data"]["gen_ai.agent.name"] == "test-agent"
    assert invoke["data"]["gen_ai.provider.name"] == "openai"
    assert invoke["data"]["gen_ai.conversation.id"] == "conversation-1"
    assert invoke["data"]["gen_ai.response.streaming"] is True
    assert invoke["data"]["gen_ai.usage.input_tokens"] == 2300
    assert invoke["data"]["gen_ai.usage.output_tokens"] == 220
    assert invoke["data"]["gen_ai.usage.total_tokens"] == 2520
    assert invoke["data"]["gen_ai.response.time_to_first_token"] >= CHUNK_PAUSE
    assert first_chat["data"]["gen_ai.operation.name"] == "chat"
    assert first_chat["data"]["gen_ai.request.model"] == MODEL
    assert first_chat["data"]["gen_ai.response.model"] == MODEL
    assert first_chat["data"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert first_chat["data"]["gen_ai.usage.input_tokens.cached"] == 400
    assert first_chat["data"]["gen_ai.usage.output_tokens.reasoning"] == 50
    assert first_chat["data"]["gen_ai.response.time_to_first_token"] >= CHUNK_PAUSE
    assert first_chat["data"]["gen_ai.conversation.id"] == "conversation-1"
    assert tool["data"]["gen_ai.operation.name"] == "execute_tool"
    assert tool["data"]["gen_ai.tool.name"] == "search_products"
    assert tool["data"]["gen_ai.tool.call.id"] == "call_1"


def test_token_cost_comes_from_the_price_table(customer, live_url, sentry_sink):
    get_stream(live_url, "/api/chat/test-stream/complete", session_cookie(customer))

    transaction = the_transaction(sentry_sink, ROUTE)
    first_chat = spans_by_op(transaction, "gen_ai.chat")[0]
    # 600 input at $2, 400 cached at $1, 200 output at $8, per million tokens.
    assert first_chat["data"]["gen_ai.cost.input_tokens"] == pytest.approx(0.0016)
    assert first_chat["data"]["gen_ai.cost.output_tokens"] == pytest.approx(0.0016)
    assert first_chat["data"]["gen_ai.cost.total_tokens"] == pytest.approx(0.0032)


def test_prompts_and_tool_data_stay_out_without_the_setting(
    customer, live_url, sentry_sink
):
    get_stream(live_url, "/api/chat/test-stream/complete", session_cookie(customer))

    transaction = the_transaction(sentry_sink, ROUTE)
    [tool] = spans_by_op(transaction, "gen_ai.execute_tool")
    assert "gen_ai.tool.call.arguments" not in tool["data"]
    assert "mugs" not in sentry_sink.raw_text()


def test_a_completed_turn_records_metrics(customer, live_url, sentry_sink):
    get_stream(live_url, "/api/chat/test-stream/complete", session_cookie(customer))
    the_transaction(sentry_sink, ROUTE)
    sentry_sdk.flush(timeout=2)

    metrics = [
        metric
        for item in sentry_sink.items("trace_metric")
        for metric in item.json["items"]
    ]
    turns = [m for m in metrics if m["name"] == "printz.ai.turns"]
    assert turns[0]["attributes"]["outcome"]["value"] == "ok"
    assert any(m["name"] == "printz.ai.cost" for m in metrics)


def test_a_completed_stream_sends_no_error(customer, live_url, sentry_sink):
    get_stream(live_url, "/api/chat/test-stream/complete", session_cookie(customer))
    the_transaction(sentry_sink, ROUTE)
    sentry_sdk.flush(timeout=2)

    assert sentry_sink.events() == []


# -- a stream that fails ---------------------------------------------------------


def test_a_failing_stream_is_reported_once_and_not_swallowed(
    customer, live_url, sentry_sink
):
    status, body, cut = get_stream(
        live_url, "/api/chat/test-stream/raise", session_cookie(customer)
    )

    assert status == 200
    # The server saw the exception: it ended the response without its last chunk.
    assert cut is not None
    assert b"more text" in body
    transaction = the_transaction(sentry_sink, ROUTE)
    sentry_sdk.flush(timeout=2)
    [event] = sentry_sink.events()
    assert event["exception"]["values"][-1]["value"] == (
        "the model stream broke mid-answer"
    )
    assert event["user"]["id"] == customer.user["id"]
    assert event["tags"]["gen_ai.conversation.id"] == "conversation-1"
    assert event["tags"]["ai.stage"] == "streaming"
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    assert event["contexts"]["trace"]["trace_id"] == invoke["trace_id"]
    assert event["contexts"]["trace"]["span_id"] == invoke["span_id"]


def test_a_failing_stream_ends_its_spans_internal_error(
    customer, live_url, sentry_sink
):
    get_stream(live_url, "/api/chat/test-stream/raise", session_cookie(customer))

    transaction = the_transaction(sentry_sink, ROUTE)
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    second_chat = spans_by_op(transaction, "gen_ai.chat")[1]
    assert invoke["status"] == "internal_error"
    assert second_chat["status"] == "internal_error"
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert progress.finally_ran.is_set()


# -- a stream the client abandons --------------------------------------------------


def test_an_abandoned_stream_is_cancelled_not_failed(customer, live_url, sentry_sink):
    abandon_stream(
        live_url, "/api/chat/test-stream/abandon", session_cookie(customer), chunks=8
    )

    assert progress.finally_ran.wait(5)
    transaction = the_transaction(sentry_sink, ROUTE)
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    second_chat = spans_by_op(transaction, "gen_ai.chat")[1]
    assert invoke["status"] == "cancelled"
    assert invoke["data"]["sentry.cancellation_reason"] == "client_disconnected"
    assert second_chat["status"] == "cancelled"
    assert transaction["contexts"]["trace"]["status"] == "cancelled"
    assert progress.chunks_made < 50  # the body stopped soon after the hang-up
    sentry_sdk.flush(timeout=2)
    assert sentry_sink.events() == []


def test_an_abandoned_stream_still_traces_its_cleanup(customer, live_url, sentry_sink):
    abandon_stream(
        live_url, "/api/chat/test-stream/abandon", session_cookie(customer), chunks=8
    )

    transaction = the_transaction(sentry_sink, ROUTE)
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    [insert] = [
        span
        for span in spans_by_op(transaction, "db")
        if '"insert":"turns"' in span["description"]
    ]
    assert insert["parent_span_id"] == invoke["span_id"]


# -- a stream never returned --------------------------------------------------------


def test_a_stream_the_view_never_returned_still_ends_its_trace(customer, sentry_sink):
    response = customer.get("/api/chat/test-unused")

    assert response.status_code == 500
    transaction = the_transaction(sentry_sink, "/api/chat/test-unused")
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    assert invoke["status"] == "internal_error"
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert len(sentry_sink.events()) == 1


# -- a block -------------------------------------------------------------------------


def test_a_block_traces_a_turn_without_streaming(customer, sentry_sink):
    response = customer.get("/api/chat/test-block")

    assert response.get_json() == {"status": "ok"}
    transaction = the_transaction(sentry_sink, "/api/chat/test-block")
    [invoke] = spans_by_op(transaction, "gen_ai.invoke_agent")
    [chat] = spans_by_op(transaction, "gen_ai.chat")
    [query] = spans_by_op(transaction, "db")[-1:]
    assert invoke["description"] == "invoke_agent block-agent"
    assert chat["parent_span_id"] == invoke["span_id"]
    assert query["parent_span_id"] == invoke["span_id"]
    assert invoke["data"]["gen_ai.usage.total_tokens"] == 15


# -- the helpers on their own ---------------------------------------------------


def test_usage_is_read_from_every_shape_the_chat_plugin_meets():
    openai_style = ai.TokenUsage.of(USAGE)
    printz_style = ai.TokenUsage.of(
        {"input_tokens": 1000, "output_tokens": 200, "cached_tokens": 400}
    )

    assert openai_style == ai.TokenUsage(1000, 200, 400, 50)
    assert printz_style.total_tokens == 1200


def test_token_cost_prices_dated_model_names_by_their_family(app):
    with app.app_context():
        assert ai.token_cost(MODEL, {"input_tokens": 1_000_000}) == pytest.approx(2.0)
        assert ai.token_cost("unpriced-model", {"input_tokens": 10}) is None


def test_capture_metric_names_the_kinds_it_accepts():
    with pytest.raises(ValueError, match="count, gauge, distribution"):
        ai.capture_metric("printz.test", 1, kind="histogram")


def test_model_outages_are_grouped_per_model(app, sentry_sink):
    class APIConnectionError(Exception):
        """Named like the OpenAI client's error."""

    with app.test_request_context("/api/chat"):
        for _ in range(3):
            ai.capture_ai_error(APIConnectionError("refused"), model=MODEL)
    sentry_sdk.flush(timeout=2)

    fingerprints = {tuple(event["fingerprint"]) for event in sentry_sink.events()}
    assert fingerprints == {("model-unavailable", "openai", MODEL)}


def test_the_transaction_hold_relies_on_finish_ignoring_a_finished_transaction(
    app, sentry_sink
):
    # streaming.HeldTransaction depends on this behaviour of the installed SDK.
    with app.app_context():
        transaction = sentry_sdk.start_transaction(name="held", sampled=True)
        held = HeldTransaction(transaction)
        assert transaction.finish() is None
        held.release("ok", sentry_sdk.get_current_scope())
    sentry_sdk.flush(timeout=2)

    assert [t["transaction"] for t in sentry_sink.transactions()] == ["held"]


def test_a_turn_outside_a_request_is_its_own_transaction(app, sentry_sink):
    with app.app_context(), ai.trace_ai_operation("nightly-agent", model=MODEL):
        pass
    sentry_sdk.flush(timeout=2)

    [transaction] = sentry_sink.transactions()
    assert transaction["transaction"] == "invoke_agent nightly-agent"
    assert transaction["contexts"]["trace"]["op"] == "gen_ai.invoke_agent"


def test_an_unknown_span_status_names_the_allowed_ones(app):
    with (
        app.app_context(),
        pytest.raises(ValueError, match="cancelled"),
        ai.trace_ai_operation("agent") as trace,
    ):
        trace.finish("stopped")
