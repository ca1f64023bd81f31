"""What every API surface shares: body parsing, auth, engine calls with uniform errors."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps

from django.http import HttpRequest
from django.views.decorators.csrf import csrf_exempt

from appliance.errors import EngineError
from appliance.fields import path_excluded
from appliance.llm.sampling import SamplingError, SamplingOptions
from inference.api.errors import RequestError, error_response
from inference.auth import AuthError, auth_failure_record, auth_failures_check, token_authenticate
from inference.engine.request import MAX_PROMPT_CHARS, MAX_TOKENS_CAP, EngineRequestError
from inference.models import ApiToken

__all__ = ["MAX_TOKENS_CAP"]


def json_body(request: HttpRequest) -> dict:
    """The body as a JSON object; 413 when it is too big, 400 when it is not JSON or nested too deep.

    NaN and ±Infinity (which Python's json accepts, and 1e400 that overflows to infinity) come
    through as floats: `number` refuses them naming the field.
    """
    from django.conf import settings

    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # Django's own cap on a body read into memory
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise RequestError("The Content-Length header is not a number.") from None
    if length > limit:
        raise RequestError(f"The request body is larger than {limit} bytes.", status=413)
    try:
        body = json.loads(request.body or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("The request body is not valid JSON.") from None
    except RecursionError:
        raise RequestError("The request body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    return body


def number(body: dict, name: str, kind: type, default, lo, hi):
    value = body.get(name, default)
    if value is None:
        return default
    must = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"'{name}' must be {must}.", param=name)
    if not math.isfinite(value):
        raise RequestError(f"'{name}' must be a finite number between {lo} and {hi}.", param=name)
    if kind is int and int(value) != value:
        raise RequestError(f"'{name}' must be {must}.", param=name)
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be between {lo} and {hi}.", param=name)
    return kind(value)


def text(body: dict, name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if value is None:
        if required:
            raise RequestError(f"'{name}' is required.", param=name)
        return None
    if not isinstance(value, str):
        raise RequestError(f"'{name}' must be a string.", param=name)
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(f"'{name}' is longer than {MAX_PROMPT_CHARS} characters.", param=name, status=413)
    return value


def sampling_options(names: dict[str, str] | None = None, **values) -> SamplingOptions:
    """SamplingOptions for a dialect; a refusal names the dialect's own field (`names` maps to it)."""
    try:
        return SamplingOptions(trim_lines=True, **values)
    except SamplingError as exc:
        field_ = exc.fields[0] if exc.fields else None
        raise RequestError(str(exc), param=(names or {}).get(field_, field_)) from None


def stop_list(body: dict, name: str = "stop", limit: int = 16) -> list[str]:
    stop = body.get(name)
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > limit
    ):
        raise RequestError(f"'{name}' must be a string or a list of up to {limit} strings.", param=name)
    return stop or []


def boolean(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise RequestError(f"'{name}' must be true or false.", param=name)
    return value


def snippets(items, *, path_key: str, text_key: str, limit: int = 16) -> list[tuple[str, str]]:
    """(path, text) pairs of other files' code sent as context; malformed items are skipped."""
    if not isinstance(items, list):
        return []
    out = []
    for item in items[:limit]:
        if isinstance(item, dict) and isinstance(item.get(text_key), str) and item[text_key].strip():
            path = item.get(path_key) if isinstance(item.get(path_key), str) else ""
            out.append((path, item[text_key]))
    return out


@dataclass
class RequestContext:
    """What a view knows about the caller, plus the steps recorded for the flow log."""

    token: ApiToken
    started: float
    steps: list = field(default_factory=list)
    excluded: bool = False  # the request concerned an excluded file: none of its text may be stored

    @property
    def user_key(self) -> str:
        # Supersession and cache affinity are per token: one IDE session, one stream of keystrokes.
        return f"token-{self.token.pk}"

    def step(self, name: str, **detail) -> None:
        self.steps.append({"step": name, "ms": round((time.monotonic() - self.started) * 1000, 2), **detail})


def api_view(kind_401: str = "authentication_error") -> Callable:
    """Authenticate (401/403/429), catch request and engine errors, answer JSON, write the flow log.

    The view gets (request, ctx: RequestContext).
    """

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            started = time.monotonic()
            ctx = None
            from appliance.login_throttle import client_address

            address = client_address(request)
            try:
                auth_failures_check(address)
                try:
                    token = token_authenticate(request.headers.get("Authorization"))
                except AuthError as exc:
                    if exc.status == 401:
                        auth_failure_record(address)
                    raise
                ctx = RequestContext(token=token, started=started)
                ctx.step("auth", user=token.user.username)
                response = view(request, ctx, *args, **kwargs)
            except AuthError as exc:
                kind = {403: "permission_error", 429: "rate_limit_error"}.get(exc.status, kind_401)
                response = error_response(exc.status, str(exc), kind=kind)
                if exc.retry_after is not None:
                    response["Retry-After"] = str(exc.retry_after)
            except RequestError as exc:
                response = error_response(exc.status, str(exc), param=exc.param)
            except EngineRequestError as exc:
                response = error_response(exc.status, str(exc), param=exc.field)
            except EngineError as exc:
                response = error_response(503, str(exc), kind="engine_unavailable")
            if ctx is not None:
                _flow_log(request, ctx, response, started)
            return response

        return wrapper

    return decorator


# The keys under which the dialects (and Hearth's own endpoints) name a file.
PATH_KEYS = frozenset({"filepath", "filename", "file", "path", "uri"})


def body_names_excluded_file(raw: bytes, globs: list[str]) -> bool:
    """True when a JSON body names a file the exclusion globs match under a path key, at any depth,
    or cannot be read to tell. The flow log asks this of every body it would keep, so that neither a
    request refused before serving looked at its paths nor a stream served after the log was
    written can leave an excluded file's text in it."""
    if not globs:
        return False
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return True
    pending = [body]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str):
                    if key.lower() in PATH_KEYS and path_excluded(value, globs):
                        return True
                else:
                    pending.append(value)
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _flow_log(request: HttpRequest, ctx: RequestContext, response, started: float) -> None:
    """Steps and metadata always; request and response bodies only when the policy allows content
    (`telemetry_content`) and the request touched no excluded file."""
    from inference.policy import serving_rules
    from inference.telemetry import flow_log_record

    rules = serving_rules()
    policy = rules.policy
    if not policy.flow_logs_enabled:
        return
    excluded = ctx.excluded or (
        policy.telemetry_content and body_names_excluded_file(request.body, rules.globs)
    )
    keep = policy.telemetry_content and not excluded
    withheld = "excluded" if excluded else "content policy"
    first = {"step": "request", "method": request.method, "bytes": len(request.body)}
    first |= (
        {"body": request.body[:20000].decode("utf-8", "replace")} if keep else {"body_withheld": withheld}
    )
    steps = [first, *ctx.steps]
    if not getattr(response, "streaming", False):
        last = {"step": "response", "bytes": len(response.content)}
        last |= (
            {"body": response.content[:20000].decode("utf-8", "replace")}
            if keep
            else {"body_withheld": withheld}
        )
        steps.append(last)
    flow_log_record(
        policy=policy,
        user_id=ctx.token.user_id,
        path=request.path,
        status_code=response.status_code,
        latency_ms=round((time.monotonic() - started) * 1000, 2),
        steps=steps,
    )


def sse_response(events):
    """A server-sent-events response over an iterator of `data: ...` lines, never cached."""
    from django.http import StreamingHttpResponse

    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response
