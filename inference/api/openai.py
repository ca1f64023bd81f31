"""OpenAI-compatible completions: POST /v1/completions (with `suffix` for FIM), GET /v1/models."""

from __future__ import annotations

import json
import logging
import time
import uuid

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from appliance.errors import EngineError
from inference.api.engine_client import engine_complete, engine_health, engine_stream
from inference.api.errors import RequestError, error_response
from inference.auth import AuthError, token_authenticate

logger = logging.getLogger(__name__)

MAX_TOKENS_CAP = 1024


def _number(body: dict, name: str, kind: type, default, lo, hi):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and int(value) != value):
        raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'}.", param=name)
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be between {lo} and {hi}.", param=name)
    return kind(value)


def _text(body: dict, name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if value is None:
        if required:
            raise RequestError(f"'{name}' is required.", param=name)
        return None
    if not isinstance(value, str):
        raise RequestError(f"'{name}' must be a string.", param=name)
    return value


def completion_params(body: dict) -> dict:
    """Validate an OpenAI completions body into engine parameters."""
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4):
        raise RequestError("'stop' must be a string or a list of up to 4 strings.", param="stop")
    if body.get("echo"):
        raise RequestError("'echo' is not supported.", param="echo")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false.", param="stream")
    return {
        "prefix": _text(body, "prompt", required=True),
        "suffix": _text(body, "suffix"),
        "max_tokens": _number(body, "max_tokens", int, 16, 1, MAX_TOKENS_CAP),
        "temperature": _number(body, "temperature", float, 0.0, 0.0, 2.0),
        "top_p": _number(body, "top_p", float, 1.0, 0.0, 1.0),
        "n": _number(body, "n", int, 1, 1, 4),
        "stop": stop or [],
        "stream": stream,
    }


def _json_body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    return body


def _openai_response(result: dict, started: float) -> dict:
    usage_prompt = sum(c["prompt_tokens"] for c in result["choices"])
    usage_completion = sum(c["completion_tokens"] for c in result["choices"])
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": result["model"],
        "choices": [
            {"index": c["index"], "text": c["text"], "logprobs": None, "finish_reason": c["finish_reason"]}
            for c in result["choices"]
        ],
        "usage": {"prompt_tokens": usage_prompt, "completion_tokens": usage_completion,
                  "total_tokens": usage_prompt + usage_completion},
        "hearth": {"latency_ms": round((time.monotonic() - started) * 1000, 1)},
    }


@csrf_exempt
@require_POST
def completions(request: HttpRequest):
    started = time.monotonic()
    try:
        token = token_authenticate(request.headers.get("Authorization"))
        params = completion_params(_json_body(request))
    except AuthError as exc:
        return error_response(exc.status, str(exc), kind="authentication_error")
    except RequestError as exc:
        return error_response(exc.status, str(exc), param=exc.param)
    params["user"] = token.user_id
    try:
        if params.pop("stream"):
            return _stream(params)
        result = engine_complete(params)
    except EngineError as exc:
        return error_response(503, str(exc), kind="engine_unavailable")
    return JsonResponse(_openai_response(result, started))


def _stream(params: dict) -> StreamingHttpResponse:
    params["n"] = 1
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    events = engine_stream(params)

    def sse():
        def event(text: str, finish: str | None, model: str) -> str:
            payload = {"id": cid, "object": "text_completion", "created": created, "model": model,
                       "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
            return f"data: {json.dumps(payload)}\n\n"

        model = ""
        try:
            for item in events:
                if "error" in item:
                    yield f"data: {json.dumps({'error': {'message': item['error'], 'type': 'engine_unavailable'}})}\n\n"
                    break
                if item.get("done"):
                    result = item["result"]
                    model = result["model"]
                    final, streamed = item["final"], item["streamed"]
                    # Deltas were sent as generated; a stop string cut afterwards is not re-sent.
                    tail = final[len(streamed):] if final.startswith(streamed) else ""
                    yield event(tail, result["choices"][0]["finish_reason"], model)
                    break
                yield event(item["delta"], None, model)
        except EngineError as exc:
            yield f"data: {json.dumps({'error': {'message': str(exc)}})}\n\n"
        yield "data: [DONE]\n\n"

    response = StreamingHttpResponse(sse(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
def models(request: HttpRequest):
    try:
        token_authenticate(request.headers.get("Authorization"))
    except AuthError as exc:
        return error_response(exc.status, str(exc), kind="authentication_error")
    try:
        health = engine_health()
    except EngineError as exc:
        return error_response(503, str(exc), kind="engine_unavailable")
    data = [{"id": health["model"], "object": "model", "created": 0, "owned_by": "hearth"}] if health.get("model") else []
    return JsonResponse({"object": "list", "data": data})
