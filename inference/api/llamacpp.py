"""llama.cpp server dialect: POST /infill (llama.vscode) and POST /completion (Continue and others),
answered in llama.cpp's own shape (`content`, `stop`, `stop_type`, `timings`, …), streamed as SSE
`data: {...}` lines when `stream` is true.

llama.vscode warms the cache with `n_predict: 0` requests carrying only `input_extra`: those
evaluate the prompt and return no text.
"""

from __future__ import annotations

import json
import time

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from appliance.errors import EngineError
from appliance.llm.sampling import SamplingOptions
from inference.api.common import (
    MAX_TOKENS_CAP,
    RequestContext,
    api_view,
    boolean,
    json_body,
    number,
    sampling_options,
    snippets,
    sse_response,
    stop_list,
    text,
)
from inference.api.errors import RequestError
from inference.api.serving import FILTERED, CompletionRequest, Served, completion_serve, completion_stream
from inference.engine.result import EngineChoice


def _sampling(body: dict) -> SamplingOptions:
    n_predict = number(body, "n_predict", int, 128, -1, MAX_TOKENS_CAP)
    t_max = number(body, "t_max_predict_ms", float, 0, 0, 600_000)
    number(body, "top_k", int, 40, 0, 1_000_000)  # validated; greedy decoding ignores it
    return sampling_options(
        {"max_tokens": "n_predict", "deadline_s": "t_max_predict_ms"},
        max_tokens=MAX_TOKENS_CAP if n_predict == -1 else n_predict,
        temperature=number(body, "temperature", float, 0.0, 0.0, 2.0),
        top_p=number(body, "top_p", float, 1.0, 0.0, 1.0),
        stop=tuple(stop_list(body)),
        deadline_s=t_max / 1000 if t_max else None,
    )


def _stop_type(choice: EngineChoice) -> str:
    if choice.finish_reason == FILTERED:
        return "none"
    if choice.finish_reason == "length":
        return "limit"
    return "word" if choice.stop_word else "eos"


def _final(served: Served, started: float) -> dict:
    choice = served.choices[0]
    timings = choice.timings
    return {
        "content": choice.text,
        "id_slot": 0,
        "model": served.model or "hearth",
        "stop": True,
        "stop_type": _stop_type(choice),
        "stopping_word": choice.stop_word,
        "tokens_predicted": choice.completion_tokens,
        "tokens_evaluated": choice.prompt_tokens,
        "tokens_cached": choice.cached_tokens,
        "truncated": False,
        "timings": {
            **timings.to_dict(),
            "prompt_per_second": timings.prompt_n / max(timings.prompt_ms, 1e-6) * 1000,
            "predicted_per_second": timings.predicted_n / max(timings.predicted_ms, 1e-6) * 1000,
            "total_ms": round((time.monotonic() - started) * 1000, 2),
        },
    }


def _answer(ctx: RequestContext, req: CompletionRequest, stream: bool):
    started = time.monotonic()
    if not stream:
        return JsonResponse(_final(completion_serve(ctx, req), started))

    def sse():
        try:
            for kind, value in completion_stream(ctx, req):
                if kind == "delta":
                    yield f"data: {json.dumps({'content': value, 'stop': False})}\n\n"
                else:
                    yield f"data: {json.dumps(_final(value, started) | {'content': ''})}\n\n"
        except EngineError as exc:
            yield f"data: {json.dumps({'error': {'code': 503, 'message': str(exc), 'type': 'unavailable_error'}})}\n\n"

    return sse_response(sse())


@require_POST
@api_view()
def infill(request: HttpRequest, ctx: RequestContext):
    body = json_body(request)
    extra = body.get("input_extra") or []
    if not isinstance(extra, list):
        raise RequestError("'input_extra' must be a list of {filename, text}.", param="input_extra")
    req = CompletionRequest(
        dialect="infill",
        prefix=(text(body, "input_prefix") or "") + (text(body, "prompt") or ""),
        suffix=text(body, "input_suffix") or "",
        context=snippets(extra, path_key="filename", text_key="text"),
        filepath=text(body, "filename") or text(body, "filepath") or "",
        language=text(body, "language") or "",
        sampling=_sampling(body),
        prompt_field="input_prefix",
    )
    return _answer(ctx, req, boolean(body, "stream"))


@require_POST
@api_view()
def completion(request: HttpRequest, ctx: RequestContext):
    body = json_body(request)
    req = CompletionRequest(
        dialect="completion",
        prefix=text(body, "prompt", required=True),
        filepath=text(body, "filepath") or "",
        language=text(body, "language") or "",
        sampling=_sampling(body),
    )
    return _answer(ctx, req, boolean(body, "stream"))
