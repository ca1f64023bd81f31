"""The one completion path behind every dialect: exclusion → context → engine → filters → telemetry.

Each dialect (OpenAI, llama.cpp, Tabby) parses its body into a `CompletionRequest` and shapes the
`Served` result; what happens in between is the same for all of them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from appliance.fields import path_excluded
from appliance.llm.sampling import SamplingOptions
from inference.api.common import RequestContext
from inference.api.engine_client import engine_complete, engine_stream
from inference.api.errors import RequestError
from inference.context import context_merge, context_retrieve, request_repository
from inference.engine.request import MAX_PROMPT_CHARS, EngineRequest, prompt_chars
from inference.engine.result import EngineChoice, EngineResult, StreamDone
from inference.filters import FilterOutcome, response_filter, suggestion_filter
from inference.policy import ServingRules, serving_rules
from inference.telemetry import completion_record, filter_counts_add, language_guess

# A choice's finish_reason when a filter cut or discarded it (OpenAI's own value for this).
FILTERED = "content_filter"


@dataclass
class CompletionRequest:
    """What any dialect asks for, validated: 413 naming `prompt_field` when the prompt is too long."""

    dialect: str  # openai | infill | completion | tabby
    prefix: str
    suffix: str | None = None
    context: list[tuple[str, str]] = field(default_factory=list)
    filepath: str = ""
    language: str = ""
    git_url: str = ""  # the client's repository (Tabby sends it): context comes from that one
    n: int = 1
    sampling: SamplingOptions = field(default_factory=lambda: SamplingOptions(trim_lines=True))
    prompt_field: str = "prompt"  # the dialect's name for the prompt, for errors
    arm: str = "served"  # set by the gateway: served, or canary for a user in the canary's share
    id: str = field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")

    def __post_init__(self) -> None:
        if prompt_chars(self.prefix, self.suffix, self.context) > MAX_PROMPT_CHARS:
            raise RequestError(
                f"The prompt (with its suffix and context) is longer than {MAX_PROMPT_CHARS} characters.",
                param=self.prompt_field,
                status=413,
            )


@dataclass
class Served:
    """The answer every dialect shapes: the engine's choices once the filters have had their say."""

    id: str
    model: str
    choices: list[EngineChoice]  # finish_reason also content_filter; never cancelled (stop instead)
    outcome: str  # ok | empty | excluded | filtered | superseded
    filters: list[str] = field(default_factory=list)
    superseded: bool = False
    arm: str = "served"  # served, or canary: the model that answered is the candidate on trial

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


def _empty_choice() -> EngineChoice:
    return EngineChoice(index=0, text="", finish_reason="stop")


def _served_choice(choice: EngineChoice, text: str, acted: list[str]) -> EngineChoice:
    """`choice` with the text the filters let through; a superseded one reads as stopped."""
    finish = FILTERED if acted else choice.finish_reason
    return replace(choice, text=text, finish_reason="stop" if finish == "cancelled" else finish)


def _prepare(ctx: RequestContext, req: CompletionRequest) -> tuple[ServingRules, EngineRequest | None]:
    """The engine request, or None when the file is excluded (no completion at all)."""
    rules = serving_rules()
    req.language = language_guess(language=req.language, filepath=req.filepath)
    if path_excluded(req.filepath, rules.globs):
        ctx.excluded = True
        ctx.step("exclusion", excluded=True)
        return rules, None
    context = [(p, t) for p, t in req.context if not path_excluded(p, rules.globs)]
    dropped = len(req.context) - len(context)
    ctx.excluded = ctx.excluded or dropped > 0  # the body holds an excluded file's text
    ctx.step("exclusion", excluded=False, context_files=len(req.context), context_dropped=dropped)
    req.arm = rules.arm_for(ctx.token.user_id)
    merged = _repository_context(ctx, req, rules, context)
    request = EngineRequest(
        user=ctx.user_key,
        prefix=req.prefix,
        suffix=req.suffix,
        context=tuple(merged),
        filepath=req.filepath,
        retrieved=len(merged) - len(context),
        retrieved_for=rules.context_for(req.arm).version_pk if len(merged) > len(context) else None,
        n=req.n,
        sampling=req.sampling,
        canary=req.arm == "canary",
    )
    return rules, request


def _repository_context(
    ctx: RequestContext, req: CompletionRequest, rules: ServingRules, client: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """What the client sent, with snippets of the answering version's repositories (the served one's,
    or the canary's for a user in its share) before it when the policy is on and the version was
    measured better with them."""
    served = rules.context_for(req.arm)
    if not rules.policy.repository_context:
        ctx.step("context", retrieved=0, sent=0, skipped="policy")
        return client
    if not served.serves_context:
        ctx.step("context", retrieved=0, sent=0, skipped="served model")
        return client
    started = time.monotonic()
    repository = request_repository(served, git_url=req.git_url, filepath=req.filepath)
    retrieved = context_retrieve(
        served,
        prefix=req.prefix,
        filepath=req.filepath,
        language=req.language,
        globs=rules.globs,
        repository=repository,
    )
    merged = context_merge(client, retrieved, prefix=req.prefix, suffix=req.suffix)
    # The step's own "ms" is its time since the request began; the retrieval's cost goes beside it.
    took = round((time.monotonic() - started) * 1000, 2)
    ctx.step(
        "context",
        retrieved=len(retrieved),
        sent=len(merged) - len(client),
        retrieval_ms=took,
        repository=repository or "all",
    )
    return merged


def _finish(
    ctx: RequestContext,
    req: CompletionRequest,
    rules: ServingRules,
    served: Served,
    result: EngineResult | None,
) -> Served:
    acted = sorted(set(served.filters))
    if acted:
        filter_counts_add(acted)
    latency = round((time.monotonic() - ctx.started) * 1000, 2)
    ctx.step("filters", acted=acted)
    excluded = served.outcome == "excluded"  # an excluded file's text is never stored, whatever the policy
    completion_record(
        policy=rules.policy,
        completion_id=served.id,
        user_id=ctx.token.user_id,
        dialect=req.dialect,
        result=result,
        language=req.language,
        latency_ms=latency,
        outcome=served.outcome,
        filters=acted,
        prompt="" if excluded else req.prefix + ("" if req.suffix is None else "<|suffix|>" + req.suffix),
        suggestion="" if excluded else served.text,
        filepath="" if excluded else req.filepath,
        arm=served.arm,
    )
    return served


def _arm(rules: ServingRules, result: EngineResult) -> str:
    """Which arm answered: the canary only when its model did (an engine not serving it yet answers
    with the served model, and the record says so)."""
    return "canary" if rules.canary is not None and result.version == rules.canary.version_pk else "served"


def _outcome(choices: list[EngineChoice], acted: list[str], superseded: bool) -> str:
    if superseded:
        return "superseded"
    if acted:
        return "filtered"
    return "ok" if any(c.text for c in choices) else "empty"


def _engine_step(ctx: RequestContext, result: EngineResult) -> None:
    ctx.step(
        "engine",
        model=result.model,
        slot=result.slot,
        cached_tokens=result.choices[0].cached_tokens,
        context_dropped=result.context_dropped,  # snippets chosen for a model not loaded
    )


def completion_serve(ctx: RequestContext, req: CompletionRequest) -> Served:
    cid = req.id
    rules, params = _prepare(ctx, req)
    if params is None:
        served = Served(cid, "", [_empty_choice()], "excluded")
        return _finish(ctx, req, rules, served, None)
    result = engine_complete(params)
    _engine_step(ctx, result)
    choices, acted = [], []
    for choice in result.choices:
        outcome: FilterOutcome = suggestion_filter(
            choice.text, index=rules.index, enabled=rules.filters, prefix=req.prefix
        )
        acted += outcome.acted
        choices.append(_served_choice(choice, outcome.text, outcome.acted))
    served = Served(
        cid,
        result.model,
        choices,
        _outcome(choices, acted, result.superseded),
        acted,
        result.superseded,
        _arm(rules, result),
    )
    return _finish(ctx, req, rules, served, result)


class StreamGuard:
    """Filters a stream: text leaves only as whole lines that passed every filter.

    A line that trips a filter ends the stream (finish_reason content_filter); for the verbatim
    filter, at most 149 matching characters were sent before the match became certain.
    """

    def __init__(self, rules: ServingRules, prefix: str = ""):
        self.rules, self.prefix, self.sent, self.pending, self.acted = rules, prefix, "", "", []

    def feed(self, delta: str) -> str:
        if self.acted:
            return ""
        self.pending += delta
        if "\n" not in self.pending:
            return ""
        cut = self.pending.rindex("\n") + 1
        return self._release(self.pending[:cut], rest=self.pending[cut:])

    def close(self, final: str) -> str:
        """The rest of the authoritative final text (stop strings already cut by the engine)."""
        if self.acted or not final.startswith(self.sent):
            return ""
        self.pending = ""
        return self._release(final[len(self.sent) :], rest="")

    def _release(self, text: str, *, rest: str) -> str:
        candidate = self.sent + text
        if self.rules.index.matches(candidate):
            self.acted = ["verbatim"]
            return ""
        outcome = response_filter(candidate, self.rules.filters, prefix=self.prefix)
        if outcome.acted:
            self.acted = outcome.acted
            out = outcome.text[len(self.sent) :] if outcome.text.startswith(self.sent) else ""
            self.sent += out
            return out
        self.sent, self.pending = candidate, rest
        return text


def completion_stream(ctx: RequestContext, req: CompletionRequest) -> Iterator[tuple[str, object]]:
    """Yields ("delta", text)… then ("done", Served). Errors from the engine come as EngineError."""
    cid = req.id
    rules, params = _prepare(ctx, req)
    if params is None:
        yield "done", _finish(ctx, req, rules, Served(cid, "", [_empty_choice()], "excluded"), None)
        return
    params = replace(params, n=1)
    guard = StreamGuard(rules, prefix=req.prefix)
    for message in engine_stream(params):
        if isinstance(message, StreamDone):
            tail = guard.close(message.final)
            if tail:
                yield "delta", tail
            result = message.result
            _engine_step(ctx, result)
            choices = [_served_choice(result.choices[0], guard.sent, guard.acted)]
            outcome = _outcome(choices, guard.acted, result.superseded)
            served = Served(
                cid, result.model, choices, outcome, guard.acted, result.superseded, _arm(rules, result)
            )
            yield "done", _finish(ctx, req, rules, served, result)
            return
        out = guard.feed(message.text)
        if out:
            yield "delta", out
