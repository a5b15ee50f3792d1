"""The scripted model server, driven by the real `openai` client over HTTP."""

import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest

from printz.devmodel import ModelServer, Turn

ROOT = Path(__file__).resolve().parent.parent
USER_HI = [{"role": "user", "content": "hi"}]
SHOP_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The shop's {name}",
            "parameters": {"type": "object", "properties": properties},
        },
    }
    for name, properties in [
        ("search_products", {"query": {"type": "string"}}),
        (
            "quote_price",
            {"product": {"type": "string"}, "quantity": {"type": "integer"}},
        ),
        ("get_order_status", {"order_id": {"type": "string"}}),
    ]
]


@pytest.fixture
def server():
    with ModelServer() as model_server:
        yield model_server


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:
        yield c


def call(server, method, path, payload=None, headers=None):
    """One plain HTTP request to the server: (status, parsed JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = None if payload is None else json.dumps(payload)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def stream_chat(client, messages=USER_HI, **options):
    return client.chat.completions.create(
        model="printz-dev", messages=messages, stream=True, **options
    )


def test_streamed_text_assembles_and_reports_usage(server, client):
    server.script.push(Turn(text="Your flyers are on their way to the printer."))

    chunks = list(stream_chat(client, stream_options={"include_usage": True}))

    text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) > 5
    assert "".join(c.choices[0].delta.content for c in text_chunks) == (
        "Your flyers are on their way to the printer."
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage.completion_tokens == 11
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert server.streams[0].completed


def test_usage_numbers_come_from_the_turn(server, client):
    server.script.push(
        Turn(
            text="ok",
            prompt_tokens=120,
            completion_tokens=30,
            cached_tokens=100,
            reasoning_tokens=12,
        )
    )

    usage = list(stream_chat(client, stream_options={"include_usage": True}))[-1].usage

    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        120,
        30,
        150,
    )
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.completion_tokens_details.reasoning_tokens == 12


def test_no_usage_chunk_unless_asked(server, client):
    server.script.push(Turn(text="ok"))

    chunks = list(stream_chat(client))

    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


def test_tool_call_arguments_assemble_from_fragments(server, client):
    arguments = {"items": [{"product": "flyers-a5", "quantity": 500}], "rush": True}
    server.script.push(
        Turn(tool_calls=[("quote_price", arguments), ("search_products", {"q": "x"})])
    )

    chunks = list(stream_chat(client, tools=SHOP_TOOLS))

    calls = {}
    for chunk in chunks:
        for piece in chunk.choices[0].delta.tool_calls or []:
            if piece.id:
                assert piece.type == "function"
                assert piece.function.arguments == ""
                calls[piece.index] = {"name": piece.function.name, "arguments": ""}
            else:
                calls[piece.index]["arguments"] += piece.function.arguments
    fragments = [
        chunk
        for chunk in chunks
        if chunk.choices[0].delta.tool_calls
        and not chunk.choices[0].delta.tool_calls[0].id
    ]
    assert len(fragments) > 4
    assert calls[0]["name"] == "quote_price"
    assert json.loads(calls[0]["arguments"]) == arguments
    assert json.loads(calls[1]["arguments"]) == {"q": "x"}
    assert chunks[0].choices[0].delta.content is None
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_non_streaming_answer_is_a_chat_completion(server, client):
    server.script.push(Turn(text="Hello!"), Turn(tool_calls=[("quote_price", "{")]))

    text = client.chat.completions.create(model="printz-dev", messages=USER_HI)
    tool = client.chat.completions.create(model="printz-dev", messages=USER_HI)

    assert text.object == "chat.completion"
    assert text.choices[0].message.content == "Hello!"
    assert text.usage.total_tokens > 0
    assert tool.choices[0].finish_reason == "tool_calls"
    assert tool.choices[0].message.tool_calls[0].function.arguments == "{"
    assert server.streams == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
        (429, openai.RateLimitError),
    ],
)
def test_fail_status_raises_the_matching_openai_error(server, client, status, error):
    server.script.push(Turn(fail_status=status, fail_message="upstream is down"))

    with pytest.raises(error) as raised:
        stream_chat(client)

    assert raised.value.status_code == status
    assert raised.value.body["message"] == "upstream is down"


def test_cut_stream_raises_in_the_client(server, client):
    server.script.push(Turn(text="one two three four five six", cut_after=3))
    received = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in stream_chat(client):
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "one ", "two "]
    record = server.wait_for(lambda: server.streams[0].ended_at and server.streams[0])
    assert record.cut
    assert record.chunks_written == 3
    assert not record.completed


def test_closing_the_stream_early_is_recorded_promptly(server, client):
    server.script.push(Turn(text="word " * 200, chunk_interval=0.05))
    stream = stream_chat(client)
    next(iter(stream))
    next(iter(stream))

    closed_by_client = time.time()
    stream.close()

    record = server.wait_for(lambda: server.streams[0].client_closed, timeout=1.0)
    assert record
    record = server.streams[0]
    assert record.closed_at - closed_by_client < 1.0
    assert 2 <= record.chunks_written < 10
    assert not record.completed


def test_closing_a_raw_response_early_is_recorded(server, client):
    server.script.push(Turn(text="word " * 200, chunks_per_second=20))
    with client.chat.completions.with_streaming_response.create(
        model="printz-dev", messages=USER_HI, stream=True
    ) as response:
        next(response.iter_lines())
        response.close()

    assert server.wait_for(lambda: server.streams[0].client_closed, timeout=1.0)


def test_a_hanging_turn_times_out_the_client_and_records_it(server):
    server.script.push(Turn(hang=True))
    impatient = openai.OpenAI(
        base_url=server.base_url, api_key="x", max_retries=0, timeout=0.3
    )

    with impatient, pytest.raises(openai.APITimeoutError):
        stream_chat(impatient)

    assert server.wait_for(lambda: server.streams[0].client_closed, timeout=1.0)
    assert server.streams[0].chunks_written == 0


def test_stop_releases_a_hanging_request():
    server = ModelServer().start()
    server.script.push(Turn(hang=True))
    patient = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)

    # The client blocks until the server lets go, so the stop comes from a timer.
    threading.Timer(0.3, server.stop).start()
    started = time.monotonic()
    with pytest.raises(openai.APIConnectionError):
        stream_chat(patient)

    assert time.monotonic() - started < 3


def test_delay_before_first_holds_the_response(server, client):
    server.script.push(Turn(text="late", delay_before_first=0.3))

    started = time.monotonic()
    first = next(iter(stream_chat(client)))

    assert time.monotonic() - started >= 0.3
    assert first.choices[0].delta.role == "assistant"


def test_chunks_per_second_paces_the_stream(server, client):
    server.script.push(Turn(text=["a", "b", "c", "d", "e"], chunks_per_second=20))

    started = time.monotonic()
    list(stream_chat(client))

    # Role chunk, five text chunks and the finish chunk: six gaps of 50 ms.
    assert time.monotonic() - started >= 0.29


def test_requests_are_recorded_with_headers_and_body(server, client):
    client.chat.completions.create(model="gpt-4o-mini", messages=USER_HI)
    anonymous, _ = call(server, "POST", "/chat/completions", {"messages": USER_HI})

    first, second = server.requests
    assert anonymous == 200
    assert first.path == "/v1/chat/completions"
    assert first.body["model"] == "gpt-4o-mini"
    assert first.headers["authorization"] == "Bearer x"
    assert first.has_authorization
    assert not second.has_authorization
    assert first.received_at <= second.received_at <= time.time()


def test_keep_alive_connections_are_reused(server):
    server.script.push(Turn(text="first"), Turn(text="second"))
    body = {"model": "printz-dev", "messages": USER_HI}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)

    try:
        connection.request(
            "POST", "/v1/chat/completions", json.dumps(body | {"stream": True})
        )
        streamed = connection.getresponse()
        events = streamed.read().decode()
        connection.request("GET", "/v1/models")
        models = connection.getresponse()
        models.read()
        connection.request("POST", "/v1/chat/completions", json.dumps(body))
        completion = json.loads(connection.getresponse().read())
    finally:
        connection.close()

    assert streamed.getheader("content-type") == "text/event-stream"
    assert events.endswith("data: [DONE]\n\n")
    assert models.status == 200
    assert completion["choices"][0]["message"]["content"] == "second"
    assert len({record.client_port for record in server.requests}) == 1


def test_models_are_listed(server, client):
    assert "printz-dev" in [model.id for model in client.models.list()]
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_control_endpoints_script_and_report(server, client):
    turns = [{"text": "from http"}, {"tool_calls": [["search_products", {}]]}]
    queued = call(server, "POST", "/_script", turns)
    _, script = call(server, "GET", "/_script")

    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in stream_chat(client)
    )
    tool = client.chat.completions.create(model="printz-dev", messages=USER_HI)
    _, requests = call(server, "GET", "/_requests")
    _, streams = call(server, "GET", "/_streams")
    reset = call(server, "POST", "/_reset")

    assert queued == (200, {"queued": 2, "pending": 2})
    assert script["pending"][1]["tool_calls"] == [
        {"name": "search_products", "arguments": {}}
    ]
    assert text == "from http"
    assert tool.choices[0].message.tool_calls[0].function.name == "search_products"
    assert [r["path"] for r in requests] == ["/v1/chat/completions"] * 2
    assert requests[0]["body"]["stream"] is True
    assert streams[0]["completed"] and streams[0]["request_index"] == 0
    assert reset[0] == 200
    assert server.requests == [] and server.streams == [] and len(server.script) == 0


def test_control_endpoint_rejects_an_unknown_turn_field(server):
    status, answer = call(server, "POST", "/_script", [{"txt": "typo"}])

    assert status == 400
    assert "txt" in answer["error"]["message"]
    assert len(server.script) == 0


def test_turn_rejects_contradictory_pacing():
    with pytest.raises(ValueError, match="not both"):
        Turn(chunk_interval=0.1, chunks_per_second=10)
    with pytest.raises(ValueError, match="fail_status"):
        Turn(fail_status=200)


@pytest.mark.parametrize(
    ("question", "tool", "arguments"),
    [
        ("Do you print business cards?", "search_products", {"query": "business card"}),
        ("What's the price of 500 flyers?", "quote_price", {"product": "flyer"}),
        ("Where is my order PZ-1042?", "get_order_status", {"order_id": "PZ-1042"}),
    ],
)
def test_demo_calls_the_fitting_shop_tool(client, question, tool, arguments):
    messages = [{"role": "user", "content": question}]

    answer = client.chat.completions.create(
        model="printz-dev", messages=messages, tools=SHOP_TOOLS
    )

    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == tool
    assert json.loads(call.function.arguments).items() >= arguments.items()


def test_demo_quote_carries_the_quantity(client):
    messages = [{"role": "user", "content": "quote 1,000 posters please"}]

    answer = client.chat.completions.create(
        model="printz-dev", messages=messages, tools=SHOP_TOOLS
    )

    arguments = json.loads(answer.choices[0].message.tool_calls[0].function.arguments)
    assert arguments == {"product": "poster", "quantity": 1000}


def test_demo_summarises_a_tool_result(client):
    messages = [
        {"role": "user", "content": "flyers?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search_products", "arguments": "{}"},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": json.dumps({"items": [{"name": "Flyers A5"}], "next": None}),
        },
    ]

    answer = client.chat.completions.create(
        model="printz-dev", messages=messages, tools=SHOP_TOOLS
    )

    assert answer.choices[0].finish_reason == "stop"
    assert "Flyers A5" in answer.choices[0].message.content


def test_demo_greets_without_calling_unoffered_tools(client):
    messages = [{"role": "user", "content": "Do you print flyers?"}]

    answer = client.chat.completions.create(model="printz-dev", messages=messages)

    assert answer.choices[0].message.tool_calls is None
    assert "Printz demo assistant" in answer.choices[0].message.content


def test_scripted_pacing_applies_to_demo_content(server, client):
    server.script.push(Turn(cut_after=2))

    with pytest.raises(openai.APIConnectionError):
        list(stream_chat(client))

    assert server.streams[0].chunks_written == 2


def test_cli_serves_the_demo_with_paced_chunks():
    command = [
        sys.executable,
        "-m",
        "printz.devmodel",
        "--port",
        "0",
        "--chunks-per-second",
        "200",
        "--text-chunks",
        "25",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stderr=subprocess.PIPE, text=True, encoding="utf-8"
    )
    try:
        # Skip whatever else start-up logs until the line naming the address.
        line = ""
        while "Scripted model server on" not in line:
            line = process.stderr.readline()
            assert line, "the model server exited before listening"
        base_url = line.split(" on ", 1)[1].split()[0]
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)

        chunks = list(stream_chat(client))

        text_chunks = [c for c in chunks if c.choices[0].delta.content]
        assert len(text_chunks) == 25
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
