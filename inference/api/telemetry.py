"""Hearth's own telemetry endpoints: accepted-code snapshots, and readiness for load balancers."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from appliance.errors import EngineError
from appliance.fields import path_excluded
from inference.api.common import RequestContext, api_view, json_body, number, text
from inference.api.engine_client import engine_health
from inference.api.errors import RequestError
from inference.policy import serving_rules
from inference.telemetry import language_guess, snapshot_record

logger = logging.getLogger(__name__)


@require_POST
@api_view()
def snapshots(request: HttpRequest, ctx: RequestContext):
    """The code around an accepted completion, `elapsed_s` after acceptance (stored only when allowed,
    never for an excluded file: then the answer is the same `stored: false` as with content off)."""
    body = json_body(request)
    completion_id = text(body, "completion_id", required=True)
    if not completion_id:
        raise RequestError("'completion_id' must not be empty.", param="completion_id")
    code = text(body, "text", required=True)
    if len(code) > 100_000:
        raise RequestError("'text' is limited to 100000 characters.", param="text")
    filepath = text(body, "filepath") or ""
    rules = serving_rules()
    if path_excluded(filepath, rules.globs):
        ctx.excluded = True  # the flow log keeps no body either
        ctx.step("exclusion", excluded=True)
    stored = snapshot_record(
        policy=rules.policy,
        user_id=ctx.token.user_id,
        completion_id=completion_id,
        filepath=filepath,
        language=language_guess(language=text(body, "language"), filepath=filepath),
        elapsed_s=number(body, "elapsed_s", int, 0, 0, 30 * 86400),
        text=code,
    )
    return JsonResponse({"stored": stored})


@require_GET
def ready(request: HttpRequest):
    """200 once the engine serves a model, else 503. No auth (for load balancers and probes), so it
    says only that: why the engine is not ready (file paths, errors) is logged and shown in the admin."""
    try:
        h = engine_health()
    except EngineError as exc:
        logger.warning("readiness: engine unavailable: %s", exc)
        return JsonResponse({"ready": False}, status=503)
    ok = h.get("status") == "ok"
    if not ok:
        logger.warning("readiness: engine not ready: %s", h.get("error", ""))
    return JsonResponse({"ready": ok}, status=200 if ok else 503)
