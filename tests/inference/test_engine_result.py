"""The engine's answer as a typed result: it survives the wire unchanged, and a malformed reply is an
EngineReplyError naming the field at fault (a 503 saying so), never a KeyError in a dialect."""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference.engine.result import (
    EngineChoice,
    EngineReplyError,
    EngineResult,
    StreamDelta,
    StreamDone,
    Timings,
    stream_message_from_dict,
)


def _result() -> EngineResult:
    first = EngineChoice(
        index=0,
        text="return a + b\n",
        finish_reason="stop",
        prompt_tokens=41,
        completion_tokens=6,
        cached_tokens=30,
        timings=Timings(prompt_n=11, prompt_ms=12.5, predicted_n=6, predicted_ms=30.25),
        stop_word="\n\n",
    )
    second = EngineChoice(index=1, text="return b + a", finish_reason="length", prompt_tokens=41)
    return EngineResult(
        choices=(first, second),
        superseded=False,
        model="m-7",
        version=7,
        slot=1,
        can_infill=True,
        context_dropped=2,
    )


def _over_the_wire(payload: dict) -> object:
    return json.loads(json.dumps(payload))


def test_a_result_round_trips_through_the_wire_format():
    result = _result()
    assert EngineResult.from_dict(_over_the_wire(result.to_dict())) == result
    cancelled = EngineResult.cancelled(model="m", version=None)
    assert EngineResult.from_dict(_over_the_wire(cancelled.to_dict())) == cancelled
    assert cancelled.superseded and cancelled.choices[0].finish_reason == "cancelled"


def test_stream_messages_round_trip_through_the_wire_format():
    delta = StreamDelta("retu")
    assert stream_message_from_dict(_over_the_wire(delta.to_dict())) == delta
    done = StreamDone(_result(), streamed="return a + b\n\n")
    back = stream_message_from_dict(_over_the_wire(done.to_dict()))
    assert back == done and back.final == "return a + b\n"


def test_an_error_line_in_the_stream_is_an_engine_error_not_a_malformed_reply():
    from appliance.errors import EngineError

    with pytest.raises(EngineError, match="The model was unloaded") as caught:
        stream_message_from_dict({"error": "The model was unloaded before the completion finished."})
    assert not isinstance(caught.value, EngineReplyError)


def _broken(change) -> dict:
    wire = copy.deepcopy(_result().to_dict())
    change(wire)
    return wire


@pytest.mark.parametrize(
    "body,field",
    [
        ([], "result"),
        ("ok", "result"),
        ({}, "choices"),
        (_broken(lambda w: w.pop("choices")), "choices"),
        (_broken(lambda w: w.update(choices=[])), "choices"),
        (_broken(lambda w: w.update(choices={"0": {}})), "choices"),
        (_broken(lambda w: w["choices"].__setitem__(1, "text")), "choices[1]"),
        (_broken(lambda w: w["choices"][0].pop("text")), "choices[0].text"),
        (_broken(lambda w: w["choices"][0].update(text=None)), "choices[0].text"),
        (_broken(lambda w: w["choices"][0].update(finish_reason="done")), "choices[0].finish_reason"),
        (_broken(lambda w: w["choices"][1].update(completion_tokens=True)), "choices[1].completion_tokens"),
        (_broken(lambda w: w["choices"][0].update(cached_tokens=-1)), "choices[0].cached_tokens"),
        (_broken(lambda w: w["choices"][0].update(prompt_tokens=1.5)), "choices[0].prompt_tokens"),
        (_broken(lambda w: w["choices"][0].update(timings=[])), "choices[0].timings"),
        (_broken(lambda w: w["choices"][0]["timings"].pop("prompt_ms")), "choices[0].timings.prompt_ms"),
        (
            _broken(lambda w: w["choices"][0]["timings"].update(prompt_ms="fast")),
            "choices[0].timings.prompt_ms",
        ),
        (_broken(lambda w: w.update(superseded="no")), "superseded"),
        (_broken(lambda w: w.update(version="7")), "version"),
        (_broken(lambda w: w.update(slot=-1)), "slot"),
        (_broken(lambda w: w.update(can_infill=1)), "can_infill"),
        (_broken(lambda w: w.update(model=None)), "model"),
        (_broken(lambda w: w.update(tokens=3)), "result"),
    ],
)
def test_a_malformed_result_is_an_error_naming_the_field(body, field):
    with pytest.raises(EngineReplyError) as caught:
        EngineResult.from_dict(body)
    assert caught.value.field == field
    assert str(caught.value).startswith("The engine's reply is malformed: ")
    assert f"'{field}'" in str(caught.value)


@pytest.mark.parametrize(
    "line,field",
    [
        ({"delta": 3}, "stream line"),
        ({"done": False}, "done"),
        ({"done": True, "streamed": ""}, "result"),
        ({"done": True, "streamed": "", "result": {"choices": []}}, "result.choices"),
    ],
)
def test_a_malformed_stream_line_is_an_error_naming_the_field(line, field):
    with pytest.raises(EngineReplyError) as caught:
        stream_message_from_dict(line)
    assert caught.value.field == field


# ---------------------------------------------------------------- through the engine client


class _FakeEngine(BaseHTTPRequestHandler):
    """Answers every POST with `reply` (bytes), whatever was asked."""

    reply = b""

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.reply)))
        self.end_headers()
        self.wfile.write(self.reply)


@pytest.fixture
def fake_engine(settings):
    """Point the web tier at a fake engine; set `.reply` to what it should answer."""
    from inference.api.engine_client import _local

    handler = type("Handler", (_FakeEngine,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    settings.HEARTH_ENGINE_URLS = []
    settings.HEARTH_ENGINE_HOST, settings.HEARTH_ENGINE_PORT = server.server_address
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler
    server.shutdown()
    server.server_close()
    _local.__dict__.pop("conns", None)


@pytest.mark.parametrize(
    "reply,message",
    [
        (b"<html>busy</html>", "it is not JSON"),
        (b"{}", "'choices' is missing"),
        (json.dumps(_broken(lambda w: w["choices"][0].update(text=3))).encode(), "'choices[0].text' must be"),
    ],
)
def test_engine_complete_refuses_a_malformed_reply(fake_engine, reply, message):
    from inference.api.engine_client import engine_complete
    from inference.engine.request import EngineRequest

    fake_engine.reply = reply
    with pytest.raises(EngineReplyError, match=re.escape(message)):
        engine_complete(EngineRequest(user="alice", prefix="def f():\n"))


def test_engine_complete_returns_the_typed_result(fake_engine):
    from inference.api.engine_client import engine_complete, engine_stream
    from inference.engine.request import EngineRequest

    fake_engine.reply = json.dumps(_result().to_dict()).encode()
    assert engine_complete(EngineRequest(user="alice", prefix="x")) == _result()
    done = StreamDone(_result(), streamed="return a + b\n")
    fake_engine.reply = b"".join(
        json.dumps(m.to_dict()).encode() + b"\n"
        for m in (StreamDelta("return"), StreamDelta(" a + b\n"), done)
    )
    assert list(engine_stream(EngineRequest(user="alice", prefix="x"))) == [
        StreamDelta("return"),
        StreamDelta(" a + b\n"),
        done,
    ]


@pytest.mark.django_db
def test_a_malformed_engine_reply_is_a_503_that_says_so(client, fake_engine):
    from inference.auth import token_create

    token = token_create(username="alice")[1]
    fake_engine.reply = json.dumps({"model": "m", "superseded": False}).encode()
    r = client.post(
        "/v1/completions",
        {"prompt": "def f():\n"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["type"] == "engine_unavailable"
    assert error["message"] == "The engine's reply is malformed: 'choices' is missing."
    fake_engine.reply = json.dumps({"delta": "x"}).encode() + b"\n" + json.dumps({"done": True}).encode()
    r = client.post(
        "/v1/completions",
        {"prompt": "def f():\n", "stream": True},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    body = b"".join(r.streaming_content).decode()
    assert "The engine's reply is malformed" in body and body.endswith("data: [DONE]\n\n")


@pytest.mark.django_db
def test_a_superseded_request_in_the_llamacpp_dialect_answers_zero_timings(client, monkeypatch):
    """A request superseded before it ran has no timings of its own: the answer carries zeros."""
    from inference.api import serving
    from inference.auth import token_create

    monkeypatch.setattr(serving, "engine_complete", lambda params, timeout=120.0: EngineResult.cancelled())
    r = client.post(
        "/infill",
        {"input_prefix": "def f():\n", "input_suffix": ""},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token_create(username='alice')[1]}",
    )
    assert r.status_code == 200, r.content
    answer = r.json()
    assert answer["content"] == "" and answer["stop_type"] == "eos"
    assert answer["timings"]["prompt_n"] == answer["timings"]["predicted_ms"] == 0
