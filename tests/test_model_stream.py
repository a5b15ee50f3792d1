"""The model stream's SSE decoding, fed the pieces a socket may hand over."""

from __future__ import annotations

import json

import openai
import pytest

from plugins.chat.model import InStreamError, SSEDecoder, open_model_stream
from printz.devmodel import ModelServer, Turn


def event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def test_each_data_event_is_one_chunk():
    decoder = SSEDecoder()

    chunks = decoder.feed(event({"n": 1}) + event({"n": 2}) + b"data: [DONE]\n\n")

    assert chunks == [{"n": 1}, {"n": 2}]
    assert decoder.done


def test_an_event_split_anywhere_comes_out_once_complete():
    wire = event({"text": "héllo"}) + event({"text": "world"})
    for cut in range(1, len(wire)):
        decoder = SSEDecoder()
        got = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert got == [{"text": "héllo"}, {"text": "world"}], cut


def test_crlf_and_cr_line_endings_even_split_between_pieces():
    decoder = SSEDecoder()

    first = decoder.feed(b'data: {"a": 1}\r')
    rest = decoder.feed(b'\n\r\ndata: {"b": 2}\r\rdata: [DONE]\r\n\r\n')

    assert first == []
    assert rest == [{"a": 1}, {"b": 2}]
    assert decoder.done


def test_comments_other_fields_and_multiline_data():
    decoder = SSEDecoder()

    chunks = decoder.feed(
        b': keep-alive\n\nevent: chunk\nid: 7\ndata: {"a":\ndata: 1}\n\n'
    )

    assert chunks == [{"a": 1}]


def test_nothing_after_done_is_read():
    decoder = SSEDecoder()

    chunks = decoder.feed(b"data: [DONE]\n\n" + event({"late": True}))

    assert chunks == []
    assert decoder.done


def test_an_error_event_raises_with_the_models_message():
    decoder = SSEDecoder()

    with pytest.raises(InStreamError) as raised:
        decoder.feed(event({"error": {"message": "overloaded", "type": "server"}}))

    assert raised.value.message == "overloaded"
    assert raised.value.body == {"message": "overloaded", "type": "server"}


def test_a_data_line_that_is_not_json_raises():
    with pytest.raises(InStreamError):
        SSEDecoder().feed(b"data: {not json\n\n")


@pytest.fixture
def model_app(settings):
    from printz import create_app

    with ModelServer() as server:
        settings.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
        app = create_app(settings)
        with app.app_context():
            yield server


def test_chunks_that_came_before_a_broken_connection_come_before_its_error(model_app):
    model_app.script.push(Turn(text="one two three four", cut_after=3))
    stream = open_model_stream("printz-dev", [{"role": "user", "content": "hi"}], [])
    stream._thread.join(10)  # the chunks, the failure and the end all wait

    batches = stream.batches(idle=5)
    first = next(batches)
    with pytest.raises(openai.APIConnectionError):
        next(batches)

    assert len(first) == 3
    with pytest.raises(openai.APIConnectionError):  # and so does every later read
        next(stream.batches(idle=5))
