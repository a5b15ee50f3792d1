"""The AI SDK stream checker: tests/js/ui_stream.mjs driven by tests/support/ai_sdk.

Proves that the checker runs each `ai` version (v7 as `ai`, v5 as `ai5`, v6
as `ai6`) as a useChat client would, assembles valid streams into the expected
UIMessage, and fails on streams that the SDK rejects.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.ai_sdk import AI_PACKAGES, JS_DIR, check_ui_stream, ensure_ai_sdk

FIXTURES = JS_DIR / "fixtures"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
    "X-Accel-Buffering": "no",
}
STANDARD_REASONS = ["stop", "length", "content-filter", "tool-calls", "error", "other"]
# What each package's uiMessageChunkSchema accepts as a `finish` chunk's
# finishReason, beyond STANDARD_REASONS.
EXTRA_REASONS = {"ai": {"interrupted"}, "ai5": {"unknown"}, "ai6": set()}
VERSION_MAJOR = {"ai": "7.", "ai5": "5.", "ai6": "6."}


@pytest.fixture(scope="module", autouse=True)
def _sdk_installed() -> None:
    ensure_ai_sdk()


def sse(*chunks: Any, done: bool = True) -> str:
    """A UI message stream: dicts become data events, str lines go verbatim."""
    out = []
    for chunk in chunks:
        if isinstance(chunk, str):
            out.append(f"{chunk}\n\n")
        else:
            out.append(f"data: {json.dumps(chunk)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out)


def text_turn(reason: str = "stop", text: str = "Hi") -> list[dict[str, Any]]:
    return [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "t1"},
        {"type": "text-delta", "id": "t1", "delta": text},
        {"type": "text-end", "id": "t1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": reason},
    ]


def texts(message: dict[str, Any]) -> list[str]:
    return [p["text"] for p in message["parts"] if p["type"] == "text"]


def parts_of(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [p for p in message["parts"] if p["type"] == kind]


def check_file(name: str, ai: str) -> dict[str, Any]:
    result = check_ui_stream(file=FIXTURES / name, ai=ai)
    assert result["ai"]["version"].startswith(VERSION_MAJOR[ai])
    return result


# --- valid fixtures ---------------------------------------------------------


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_text_only(ai: str) -> None:
    result = check_file("text.sse", ai)
    assert result["ok"], result["error"]
    assert result["error"] is None
    assert result["chat_status"] == "ready"
    assert result["finish_reason"] == "stop"
    assert not result["aborted"]
    message = result["message"]
    assert message["id"] == "msg-text-1"
    assert message["role"] == "assistant"
    assert texts(message) == ["Hello, world."]
    assert [c["type"] for c in result["chunks"]][:3] == [
        "start",
        "start-step",
        "text-start",
    ]


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_tool_call_and_second_step(ai: str) -> None:
    result = check_file("tool_call.sse", ai)
    assert result["ok"], result["error"]
    message = result["message"]
    assert texts(message) == ["Let me check the queue.", "One job: benchy.gcode."]
    assert len(parts_of(message, "step-start")) == 2
    (tool,) = parts_of(message, "tool-list_jobs")
    assert tool["toolCallId"] == "call_1"
    assert tool["state"] == "output-available"
    assert tool["input"] == {"printer": "mk4"}
    assert tool["output"] == {"jobs": [{"id": 7, "name": "benchy.gcode"}]}
    # Parts keep the stream's order: text, tool, then the second step's text.
    kinds = [p["type"] for p in message["parts"]]
    assert kinds == [
        "step-start",
        "text",
        "tool-list_jobs",
        "step-start",
        "text",
    ]
    assert message["metadata"] == {
        "conversationId": "c-1",
        "usage": {"inputTokens": 120, "outputTokens": 30, "totalTokens": 150},
    }


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_tool_output_error_does_not_end_the_turn(ai: str) -> None:
    result = check_file("tool_error.sse", ai)
    assert result["ok"], result["error"]
    assert result["chat_status"] == "ready"
    (tool,) = parts_of(result["message"], "tool-cancel_job")
    assert tool["state"] == "output-error"
    assert tool["input"] == {"job_id": 42}
    assert tool["errorText"] == "job 42 not found"
    assert texts(result["message"]) == ["There is no job 42."]


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_error_chunk_keeps_partial_text(ai: str) -> None:
    result = check_file("error_chunk.sse", ai)
    # Valid protocol; the turn failed the way useChat reports it.
    assert result["ok"], result["error"]
    assert result["stream_error"] == "model backend unreachable"
    assert result["chat_status"] == "error"
    assert not result["aborted"]
    assert texts(result["message"]) == ["Partial ans"]


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_metadata_is_merged_and_usage_lands(ai: str) -> None:
    result = check_file("usage_metadata.sse", ai)
    assert result["ok"], result["error"]
    assert result["finish_reason"] == "length"
    assert result["message"]["metadata"] == {
        "model": "test-model",
        "conversationId": "c-9",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
    }


# --- invalid streams --------------------------------------------------------

INVALID = sorted(p.name for p in (FIXTURES / "invalid").glob("*.sse"))


@pytest.mark.parametrize("name", INVALID)
@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_invalid_fixture_fails(ai: str, name: str) -> None:
    result = check_file(f"invalid/{name}", ai)
    if ai == "ai5" and name == "finish_reason_unknown.sse":
        # v5's schema still lists "unknown"; v6 and v7 dropped it.
        assert result["ok"], result["error"]
        assert result["finish_reason"] == "unknown"
        return
    assert not result["ok"]
    assert result["error"]
    assert result["chat_status"] == "error"


def test_invalid_fixtures_are_there() -> None:
    assert {
        "delta_without_start.sse",
        "finish_reason_unknown.sse",
        "non_json_data.sse",
        "unknown_chunk_type.sse",
    } <= set(INVALID)


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_rejection_names_the_schema_failure(ai: str) -> None:
    result = check_file("invalid/unknown_chunk_type.sse", ai)
    assert result["error_name"] == "AI_TypeValidationError"
    assert "Type validation failed" in result["error"]
    result = check_file("invalid/non_json_data.sse", ai)
    assert result["error_name"] == "AI_JSONParseError"


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_v4_data_stream_is_silently_ignored(ai: str) -> None:
    # The trap: no error, no chunk, no message. Callers must assert a message.
    result = check_file("ignored/v4_data_stream.sse", ai)
    assert result["ok"]
    assert result["chunks"] == []
    assert result["message"] is None


@pytest.mark.parametrize("reason", [*STANDARD_REASONS, "unknown", "interrupted"])
@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_finish_reasons(ai: str, reason: str) -> None:
    result = check_ui_stream(data=sse(*text_turn(reason)), ai=ai)
    accepted = reason in STANDARD_REASONS or reason in EXTRA_REASONS[ai]
    assert result["ok"] is accepted, result["error"]
    if accepted:
        assert result["finish_reason"] == reason
        assert texts(result["message"]) == ["Hi"]
    else:
        assert result["error_name"] == "AI_TypeValidationError"
        assert reason in result["error"]


# --- transport details --------------------------------------------------------


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_done_marker_is_optional(ai: str) -> None:
    for done in (True, False):
        result = check_ui_stream(data=sse(*text_turn(), done=done), ai=ai)
        assert result["ok"], (done, result["error"])
        assert texts(result["message"]) == ["Hi"]
        assert len(result["chunks"]) == len(text_turn())


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_comments_event_and_id_lines_are_ignored(ai: str) -> None:
    noisy: list[Any] = [": keep-alive"]
    for i, chunk in enumerate(text_turn()):
        noisy += [": keep-alive", f"event: message\nid: {i}\ndata: {json.dumps(chunk)}"]
    noisy.append(": keep-alive")
    result = check_ui_stream(data=sse(*noisy), ai=ai)
    assert result["ok"], result["error"]
    assert texts(result["message"]) == ["Hi"]
    assert len(result["chunks"]) == len(text_turn())


def test_usage_errors_raise() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        check_ui_stream()
    with pytest.raises(ValueError, match="ai must be"):
        check_ui_stream(data="", ai="ai4")


# --- over HTTP ----------------------------------------------------------------


class StreamServer:
    """A loopback HTTP server whose handler is a callable; records requests."""

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                server.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(raw) if raw else None,
                    }
                )
                try:
                    respond(self)
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnected.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/chat"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StreamServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def send_sse_headers(handler: BaseHTTPRequestHandler, status: int = 200) -> None:
    handler.send_response(status)
    for name, value in SSE_HEADERS.items():
        handler.send_header(name, value)
    handler.end_headers()


def serve_fixture(name: str) -> Callable[[BaseHTTPRequestHandler], None]:
    body = (FIXTURES / name).read_bytes()

    def respond(handler: BaseHTTPRequestHandler) -> None:
        send_sse_headers(handler)
        for event in body.split(b"\n\n"):
            if event.strip():
                handler.wfile.write(event + b"\n\n")
                handler.wfile.flush()

    return respond


@pytest.fixture
def fixture_server() -> Iterator[StreamServer]:
    with StreamServer(serve_fixture("tool_call.sse")) as server:
        yield server


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_url_posts_body_and_headers(ai: str, fixture_server: StreamServer) -> None:
    body = {"id": "chat-1", "messages": [], "trigger": "submit-message"}
    result = check_ui_stream(
        url=fixture_server.url,
        body=body,
        headers={"Cookie": "session=abc123", "X-Test": "yes"},
        ai=ai,
    )
    assert result["ok"], result["error"]
    assert result["status"] == 200
    assert result["headers"]["content-type"] == "text/event-stream"
    assert result["headers"]["x-vercel-ai-ui-message-stream"] == "v1"
    assert result["headers"]["cache-control"] == "no-cache"
    assert result["headers"]["x-accel-buffering"] == "no"
    (tool,) = parts_of(result["message"], "tool-list_jobs")
    assert tool["state"] == "output-available"
    assert result["message"]["metadata"]["usage"]["totalTokens"] == 150

    (request,) = fixture_server.requests
    assert request["path"] == "/api/chat"
    assert request["body"] == body
    assert request["headers"]["cookie"] == "session=abc123"
    assert request["headers"]["x-test"] == "yes"
    assert request["headers"]["content-type"] == "application/json"


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_url_default_body_is_use_chats(ai: str, fixture_server: StreamServer) -> None:
    result = check_ui_stream(
        url=fixture_server.url, text="What is printing?", chat_id="chat-7", ai=ai
    )
    assert result["ok"], result["error"]
    (request,) = fixture_server.requests
    sent = request["body"]
    assert sent["id"] == "chat-7"
    assert sent["trigger"] == "submit-message"
    (user,) = sent["messages"]
    assert user["role"] == "user"
    assert user["parts"] == [{"type": "text", "text": "What is printing?"}]


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_url_error_status_is_reported(ai: str) -> None:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        payload = json.dumps({"error": "conversation is busy"}).encode()
        handler.send_response(409)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    with StreamServer(respond) as server:
        result = check_ui_stream(url=server.url, body={}, ai=ai)
    assert not result["ok"]
    assert result["status"] == 409
    assert "conversation is busy" in result["error"]
    assert result["message"] is None


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_abort_after_chunks_stops_the_fetch(ai: str) -> None:
    deltas_sent = []

    def respond(handler: BaseHTTPRequestHandler) -> None:
        send_sse_headers(handler)
        head = text_turn()[:3]
        for chunk in head:
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        # Bounded: at most 10 s of deltas unless the client goes away first.
        for i in range(500):
            delta = {"type": "text-delta", "id": "t1", "delta": f"w{i} "}
            handler.wfile.write(f"data: {json.dumps(delta)}\n\n".encode())
            handler.wfile.flush()
            deltas_sent.append(i)
            time.sleep(0.02)
        handler.wfile.write(sse(*text_turn()[4:]).encode())

    with StreamServer(respond) as server:
        result = check_ui_stream(url=server.url, body={}, ai=ai, abort_after_chunks=5)
        assert server.disconnected.wait(5), "server never saw the client go"
    assert result["aborted"]
    assert result["ok"], result["error"]
    assert result["chat_status"] == "ready"
    assert result["stream_error"] is None
    assert len(result["chunks"]) >= 5
    assert "finish" not in [c["type"] for c in result["chunks"]]
    (text,) = texts(result["message"])
    assert text.startswith("w0 w1 ")
    assert len(deltas_sent) < 500


@pytest.mark.parametrize("ai", AI_PACKAGES)
def test_no_abort_when_stream_ends_first(ai: str, fixture_server: StreamServer) -> None:
    result = check_ui_stream(
        url=fixture_server.url, body={}, ai=ai, abort_after_chunks=1000
    )
    assert result["ok"], result["error"]
    assert not result["aborted"]
    assert result["finish_reason"] == "stop"


def test_fixture_files_end_with_done() -> None:
    for path in sorted(FIXTURES.glob("*.sse")):
        assert path.read_text().endswith("data: [DONE]\n\n"), path.name


def test_script_is_next_to_fixtures() -> None:
    assert (JS_DIR / "ui_stream.mjs").is_file()
    assert Path(JS_DIR / "package-lock.json").is_file()
