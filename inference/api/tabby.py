"""Tabby dialect: completions with `segments`, `/v1/events` and `/v1/health`, so Tabby's IDE
extensions work unchanged. The completion id answered here is the one their events refer to."""

from __future__ import annotations

import os

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from inference.api.common import RequestContext, api_view, json_body, number, sampling_options, snippets
from inference.api.engine_client import engine_health
from inference.api.errors import RequestError
from inference.api.serving import CompletionRequest, completion_serve
from inference.policy import serving_rules
from inference.telemetry import event_record

EVENT_TYPES = {"view", "select", "dismiss", "completion"}
SNIPPET_KEYS = (
    "declarations",
    "relevant_snippets_from_changed_files",
    "relevant_snippets_from_recently_opened_files",
)


def completion(body: dict, ctx: RequestContext) -> JsonResponse:
    segments = body.get("segments")
    if not isinstance(segments, dict) or not isinstance(segments.get("prefix", ""), str):
        raise RequestError("'segments' must be an object with a 'prefix' string.", param="segments")
    suffix = segments.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise RequestError("'segments.suffix' must be a string.", param="segments")
    filepath = segments.get("filepath")
    language = body.get("language")
    context = []
    for key in SNIPPET_KEYS:
        context += snippets(segments.get(key) or [], path_key="filepath", text_key="body", limit=8)
    git_url = segments.get("git_url")
    req = CompletionRequest(
        dialect="tabby",
        git_url=git_url if isinstance(git_url, str) else "",
        prefix=segments.get("prefix", ""),
        suffix=suffix or "",
        context=context,
        filepath=filepath if isinstance(filepath, str) else "",
        language=language if isinstance(language, str) else "",
        sampling=sampling_options(
            max_tokens=64, temperature=number(body, "temperature", float, 0.0, 0.0, 2.0), stop=("\n\n",)
        ),
        prompt_field="segments",
    )
    served = completion_serve(ctx, req)
    return JsonResponse({"id": served.id, "choices": [{"index": 0, "text": served.text}]})


@require_POST
@api_view()
def events(request: HttpRequest, ctx: RequestContext):
    body = json_body(request)
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise RequestError(f"'type' must be one of {', '.join(sorted(EVENT_TYPES))}.", param="type")
    completion_id = body.get("completion_id")
    if not isinstance(completion_id, str) or not completion_id:
        raise RequestError("'completion_id' must be a non-empty string.", param="completion_id")
    index = number(body, "choice_index", int, 0, 0, 32)
    payload = {k: v for k, v in body.items() if k in {"view_id", "elapsed", "select_kind"}}
    event_record(
        policy=serving_rules().policy,
        user_id=ctx.token.user_id,
        kind=kind,
        completion_id=completion_id,
        choice_index=index,
        payload=payload,
    )
    return JsonResponse({})


@require_GET
@api_view()
def health(request: HttpRequest, ctx: RequestContext):
    h = engine_health()
    return JsonResponse(
        {
            "model": h.get("model") or "",
            "chat_model": None,
            "device": "cpu",
            "arch": os.uname().machine,
            "cpu_info": "",
            "cpu_count": os.cpu_count(),
            "cuda_devices": [],
            "version": {"build_date": "", "build_timestamp": "", "git_sha": "", "git_describe": "hearth"},
            "webserver": None,
        }
    )
