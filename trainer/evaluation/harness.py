"""Score GGUF models with llama.cpp on held-out line tasks and held-out perplexity.

Every model in one report is scored in the same mode: FIM (text after the line too) when all of
them can infill, else prefix-only. A model that can infill also gets its FIM score.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.cpusets import llama_threads
from appliance.errors import EvaluationError
from appliance.llm.fim import FimFormat
from appliance.llm.prompt import Completer
from appliance.llm.runtime import llama_open
from appliance.llm.sampling import SamplingOptions
from trainer.context.index import ContextIndex, context_snippets
from trainer.evaluation.metrics import edit_similarity, exact_match, wilson_interval
from trainer.evaluation.tasks import LineTask

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    label: str  # base | candidate | served
    gguf: Path
    fim: FimFormat | None


def _llama(path: Path, *, n_ctx: int, logits_all: bool = False):
    try:
        return llama_open(path, n_ctx=n_ctx, logits_all=logits_all, seed=0, **llama_threads())
    except (ValueError, RuntimeError) as exc:
        raise EvaluationError(f"llama.cpp could not load {path.name}: {exc}") from exc


def line_tasks_score(
    model: Candidate,
    tasks: list[LineTask],
    *,
    mode: str,
    n_ctx: int = 2048,
    max_tokens: int = 48,
    context_tokens: int = 1024,
    suffix_tokens: int = 128,
    progress: Callable[[int, int], None] | None = None,
    index: ContextIndex | None = None,
    context_format: str = "auto",
) -> dict:
    """`model` on `tasks` in `mode`; with `index`, each prompt also carries the index's best snippets of
    other files (same language, never the task's own file), as served completions do."""
    llm = _llama(model.gguf, n_ctx=n_ctx)
    completer = Completer(llm, model.fim, context_format=context_format)
    if mode == "fim" and not completer.can_infill:
        raise EvaluationError(f"{model.label} cannot infill; it cannot be scored in FIM mode.")
    hits, sims, per_task = 0, [], []
    per_lang: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    samples = []
    started = time.monotonic()
    for i, task in enumerate(tasks):
        options = SamplingOptions(
            max_tokens=max_tokens * task.n_lines,
            temperature=0.0,
            single_line=task.n_lines == 1,
            max_lines=task.n_lines,
            max_prompt_tokens=context_tokens,
            max_suffix_tokens=suffix_tokens,
        )
        context = (
            context_snippets(index, task.prefix, filepath=task.path, language=task.language)
            if index is not None
            else None
        )
        result = completer.complete(
            task.prefix, task.suffix if mode == "fim" else None, options, context=context, filepath=task.path
        )
        em, es = exact_match(result.text, task.target), edit_similarity(result.text, task.target)
        hits += em
        per_task.append(int(em))
        sims.append(es)
        per_lang[task.language].append((em, es))
        if len(samples) < 5 and i % 7 == 0:
            samples.append(
                {"path": task.path, "line": task.line_no, "target": task.target, "prediction": result.text}
            )
        if progress:
            progress(i + 1, len(tasks))
    del llm
    n = len(tasks)
    lo, hi = wilson_interval(hits, n)
    return {
        "mode": mode + ("+context" if index is not None else ""),
        "tasks": n,
        "exact_match": hits / n if n else 0.0,
        "exact_match_ci95": [round(lo, 4), round(hi, 4)],
        "edit_similarity": float(np.mean(sims)) if sims else 0.0,
        "by_language": {
            lang: {
                "tasks": len(v),
                "exact_match": sum(e for e, _ in v) / len(v),
                "edit_similarity": float(np.mean([s for _, s in v])),
            }
            for lang, v in sorted(per_lang.items())
        },
        "examples": samples,
        "hits": per_task,
        "seconds": round(time.monotonic() - started, 1),
    }


def perplexity(model: Candidate, texts: list[str], *, max_tokens: int = 8192, window: int = 512) -> dict:
    """Token-level perplexity of the held-out text through llama.cpp, in non-overlapping windows."""
    llm = _llama(model.gguf, n_ctx=window, logits_all=True)
    nll, count = 0.0, 0
    started = time.monotonic()
    for text in texts:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window]
            if len(chunk) < 2:
                continue
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[: len(chunk) - 1], dtype=np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            nll -= float(logprobs[np.arange(len(chunk) - 1), chunk[1:]].sum())
            count += len(chunk) - 1
            if count >= max_tokens:
                break
        if count >= max_tokens:
            break
    del llm
    if count == 0:
        raise EvaluationError("The held-out files produced no tokens to measure perplexity on.")
    return {
        "perplexity": math.exp(nll / count),
        "tokens": count,
        "nats_per_token": nll / count,
        "seconds": round(time.monotonic() - started, 1),
    }


def models_compare(
    models: list[Candidate],
    tasks: list[LineTask],
    heldout_texts: list[str],
    *,
    log: Callable[[str], None] = logger.info,
    ppl_tokens: int = 4096,
    span_tasks: list[LineTask] | None = None,
    extra_fim_tasks: int = 120,
    index: ContextIndex | None = None,
    context_format: str = "auto",
) -> dict:
    """Score every model on the same tasks in the same mode; FIM extras (on the first
    `extra_fim_tasks` tasks) for those that infill when the common mode is prefix-only. With `index`
    (the dataset's code index: training files only), every model is also scored with repository
    context on the same tasks (mode "<common>+context"), so each model has two paired arms."""
    if not tasks:
        raise EvaluationError("There are no held-out lines to score (held-out files too small?).")
    common = "fim" if all(m.fim is not None for m in models) else "prefix"
    report: dict = {"mode": common, "tasks": len(tasks), "models": {}}
    for m in models:
        log(f"scoring {m.label} ({m.gguf.name}) on {len(tasks)} held-out lines, {common} mode")
        entry = {"gguf": str(m.gguf), "can_infill": m.fim is not None, "line_completion": {}}
        entry["line_completion"][common] = line_tasks_score(m, tasks, mode=common)
        if index is not None:
            log(f"scoring {m.label} with repository context ({index.chunks} indexed chunks)")
            entry["line_completion"][f"{common}+context"] = line_tasks_score(
                m, tasks, mode=common, index=index, context_format=context_format
            )
        if common != "fim" and m.fim is not None:
            subset = tasks[:: max(1, len(tasks) // extra_fim_tasks)][:extra_fim_tasks]
            log(f"scoring {m.label} in FIM mode as well ({len(subset)} of the tasks)")
            entry["line_completion"]["fim"] = line_tasks_score(m, subset, mode="fim")
        if m.fim is not None and span_tasks:
            log(f"scoring {m.label} on {len(span_tasks)} multi-line FIM spans")
            entry["line_completion"]["fim_multiline"] = line_tasks_score(m, span_tasks, mode="fim")
        entry["perplexity"] = perplexity(m, heldout_texts, max_tokens=ppl_tokens)
        headline = entry["line_completion"][common]
        log(
            f"{m.label}: exact match {headline['exact_match']:.3f}, edit similarity "
            f"{headline['edit_similarity']:.3f}, perplexity {entry['perplexity']['perplexity']:.2f}"
        )
        report["models"][m.label] = entry
    if index is not None:
        report["context"] = {"chunks": index.chunks, "format": context_format}
    return report
