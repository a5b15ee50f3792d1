"""SIGTERM under real gunicorn: open chat answers finish, then the server exits."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import requests

from printz.devmodel import ModelServer, Turn
from tests.conftest import PASSWORD, new_email
from tests.support.gunicorn_server import GunicornServer


@pytest.fixture
def model_server():
    with ModelServer() as server:
        yield server


@pytest.mark.parametrize("worker_class", ["gthread", "gevent"])
def test_open_streams_finish_when_gunicorn_is_told_to_stop(
    settings, app, model_server, tmp_path, worker_class
):
    served = {
        **settings,
        "OPENAI_BASE_URL": model_server.base_url,
        "OPENAI_API_KEY": "sk-test-graceful",
        "PRINTZ_CHAT_MODEL": "printz-dev",
    }
    words = [f"w{n} " for n in range(30)]
    model_server.script.push(Turn(text=words, chunk_interval=0.1))
    server = GunicornServer(served, tmp_path, workers=1, worker_class=worker_class)
    server.start()
    try:
        browser = requests.Session()
        browser.post(
            server.url + "/api/auth/register",
            json={"email": new_email(), "password": PASSWORD, "name": "Ada"},
            timeout=10,
        )
        body = {
            "id": f"conv-{uuid.uuid4().hex[:8]}",
            "messages": [
                {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "go"}]}
            ],
            "trigger": "submit-message",
        }
        lines: list[str] = []

        def read_stream():
            with browser.post(
                server.url + "/api/chat", json=body, stream=True, timeout=30
            ) as answer:
                lines.extend(answer.iter_lines(decode_unicode=True))

        reader = threading.Thread(target=read_stream)
        reader.start()
        model_server.wait_for(lambda: model_server.streams, 10)
        time.sleep(0.5)  # the answer is well under way

        exit_status = server.stop(timeout=30)
        reader.join(timeout=30)
    finally:
        server.kill()

    data = [line.removeprefix("data: ") for line in lines if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    finish = json.loads(data[-2])
    assert finish["type"] == "finish"
    assert finish["finishReason"] == "stop"
    text = "".join(json.loads(d).get("delta", "") for d in data[:-1])
    assert text == "".join(words)
    assert exit_status == 0
