"""OpenAI-compatible completions: POST /v1/completions (with `suffix` for FIM), GET /v1/models.

Tabby's extensions post to the same path with `segments`; those bodies go to the Tabby view.
"""

from __future__ import annotations

import json
import time

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET, require_POST

from appliance.errors import EngineError
from inference.api import tabby
from inference.api.common import (
    MAX_TOKENS_CAP,
    RequestContext,
    api_view,
    boolean,
    json_body,
    number,
    sampling_options,
    sse_response,
    stop_list,
    text,
)
from inference.api.engine_client import engine_health
from inference.api.errors import RequestError
from inference.api.serving import CompletionRequest, Served, completion_serve, completion_stream


def completion_request(body: dict) -> tuple[CompletionRequest, bool]:
    """Validate an OpenAI completions body; `filepath` and `language` are optional Hearth extras."""
    if body.get("echo"):
        raise RequestError("'echo' is not supported.", param="echo")
    req = CompletionRequest(
        dialect="openai",
        prefix=text(body, "prompt", required=True),
        suffix=text(body, "suffix"),
        filepath=text(body, "filepath") or "",
        language=text(body, "language") or "",
        n=number(body, "n", int, 1, 1, 4),
        sampling=sampling_options(
            max_tokens=number(body, "max_tokens", int, 16, 1, MAX_TOKENS_CAP),
            temperature=number(body, "temperature", float, 0.0, 0.0, 2.0),
            top_p=number(body, "top_p", float, 1.0, 0.0, 1.0),
            stop=tuple(stop_list(body)),
        ),
    )
    return req, boolean(body, "stream")


def _usage(served: Served) -> dict:
    prompt = sum(c.prompt_tokens for c in served.choices)
    completion = sum(c.completion_tokens for c in served.choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _openai_response(served: Served) -> JsonResponse:
    response = JsonResponse(
        {
            "id": served.id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": served.model or "hearth",
            "choices": [
                {
                    "index": c.index,
                    "text": c.text,
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                }
                for c in served.choices
            ],
            "usage": _usage(served),
        }
    )
    if served.superseded:
        response["X-Hearth-Superseded"] = "1"
    return response


@require_POST
@api_view()
def completions(request: HttpRequest, ctx: RequestContext):
    body = json_body(request)
    if "segments" in body and "prompt" not in body:
        return tabby.completion(body, ctx)
    req, stream = completion_request(body)
    if stream:
        return _stream(ctx, req)
    return _openai_response(completion_serve(ctx, req))


def _stream(ctx: RequestContext, req: CompletionRequest) -> StreamingHttpResponse:
    created = int(time.time())
    events = completion_stream(ctx, req)

    def sse():
        cid, model = req.id, "hearth"

        def event(text_: str, finish: str | None) -> str:
            payload = {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": text_, "logprobs": None, "finish_reason": finish}],
            }
            return f"data: {json.dumps(payload)}\n\n"

        try:
            for kind, value in events:
                if kind == "delta":
                    yield event(value, None)
                else:
                    model = value.model or "hearth"
                    yield event("", value.choices[0].finish_reason)
        except EngineError as exc:
            yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'engine_unavailable'}})}\n\n"
        yield "data: [DONE]\n\n"

    return sse_response(sse())


@require_GET
@api_view()
def models(request: HttpRequest, ctx: RequestContext):
    health = engine_health()
    data = (
        [{"id": health["model"], "object": "model", "created": 0, "owned_by": "hearth"}]
        if health.get("model")
        else []
    )
    return JsonResponse({"object": "list", "data": data})
