"""The end-to-end demo as a service: the pipeline on one repository, then the served model asked
through the HTTP API the way an IDE asks, with the official `openai` client."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.pipeline import PipelineResult, pipeline_run
from trainer.training.config import LoraSettings

DEMO_ARMS = ("base", "base+context", "tuned", "tuned+context")


@dataclass(frozen=True)
class LiveCompletion:
    """One request made as an IDE makes it, at a held-out line of the repository."""

    path: str
    line_no: int
    typed: str  # the end of the prompt: what the developer has typed so far
    completion: str
    target: str  # what the file really has there


@dataclass(frozen=True)
class DemoResult:
    pipeline: PipelineResult
    live: LiveCompletion
    base_url: str
    token: str
    admin_password: str
    seconds: float

    def summary(self) -> dict:
        """The demo's JSON line."""
        scores, version, run = self.pipeline.report.scores, self.pipeline.version, self.pipeline.run
        base, tuned = scores.headline("base"), scores.headline("candidate")
        return {
            "base_exact_match": round(base.exact_match, 4),
            "tuned_exact_match": round(tuned.exact_match, 4),
            "base_edit_similarity": round(base.edit_similarity, 4),
            "tuned_edit_similarity": round(tuned.edit_similarity, 4),
            "base_perplexity": _round(scores.models["base"].perplexity),
            "tuned_perplexity": _round(scores.models["candidate"].perplexity),
            "mode": scores.mode,
            "tasks": base.tasks,
            "promoted": version.status == "promoted",
            "decision": self.pipeline.report.decision,
            "gguf": version.gguf_path,
            "gguf_sha256": version.gguf_sha256,
            "completion": self.live.completion,
            "completion_target": self.live.target,
            "training_tokens_per_s": run.summary.get("tokens_per_s"),
            "arms": {arm: scores.arm_summary(arm) for arm in scores.arms if arm in DEMO_ARMS},
            "served_arm": version.served_arm or "tuned",
            "method": run.method,
            "split": (self.pipeline.dataset.report.get("split") or {}).get("method"),
            "general": _general_summary(scores),
            "seconds": self.seconds,
        }


def _general_summary(scores) -> dict:
    """Exact match on general code (the standard library's held-out lines), base and candidate: what
    fine-tuning forgot; None where an arm was not scored."""
    general = scores.general
    return {
        key: round(general.arm(arm).exact_match, 4) if general and general.has_arm(arm) else None
        for key, arm in (("base", "base"), ("candidate", "tuned"))
    }


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def demo_run(
    *,
    source: str,
    base_slug: str,
    settings_: LoraSettings,
    port: int,
    services,
    log: Callable[[str], None],
) -> DemoResult:
    """Run the pipeline through a qcluster started for it, then serve and ask. `services` is an
    `appliance.processes.Services`; the caller stops it."""
    from appliance.processes import engine_wait, wait_http, web_url
    from inference.auth import token_create
    from inference.engine.selection import served_model_select

    started = time.monotonic()
    services.start_qcluster(alone=True)  # the engine starts after the fine-tune: every core trains
    result = pipeline_run(
        source=source, base_slug=base_slug, settings=settings_, log=log, check_alive=services.check_alive
    )
    log("serve: engine + web, then a live request with the openai client")
    services.start_engine()
    services.start_web(port)
    expected = served_model_select().id
    engine_wait(timeout=120, accept=lambda h: h.get("model") == expected, services=services)
    web = web_url(port)
    wait_http(f"{web}/ready", timeout=60, services=services)
    _, raw = token_create(username="demo", name="make demo")
    base_url = f"{web}/v1"
    live = live_completion_ask(base_url=base_url, token=raw, dataset_path=Path(result.dataset.path))
    return DemoResult(result, live, base_url, raw, _admin_user_ensure(), round(time.monotonic() - started, 1))


def live_completion_ask(*, base_url: str, token: str, dataset_path: Path) -> LiveCompletion:
    """Ask for a held-out line the way an IDE does while the developer types its first word."""
    from openai import DefaultHttpxClient, OpenAI

    from trainer.evaluation.tasks import line_tasks_build
    from trainer.tools.dataset_files import dataset_files_read

    task = line_tasks_build(dataset_files_read(dataset_path, "heldout"), max_tasks=1)[0]
    typed = re.match(r"\s*\S+?(?=\W|$)", task.target) or re.match(r"\s*\S*", task.target)
    prefix = "\n".join(task.prefix.split("\n")[-30:]) + typed.group(0)
    suffix = "\n".join(task.suffix.split("\n")[:15])
    # Hearth's own server on loopback, possibly behind a self-signed certificate.
    http_client = DefaultHttpxClient(verify=False, timeout=120) if base_url.startswith("https:") else None
    client = OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=120, http_client=http_client)
    model = client.models.list().data[0].id
    response = client.completions.create(
        model=model, prompt=prefix, suffix=suffix, max_tokens=32, temperature=0, stop=["\n"]
    )
    return LiveCompletion(task.path, task.line_no, prefix[-40:], response.choices[0].text, task.target)


def _arm_lines(scores, served_arm: str) -> list[str]:
    """The four paired arms, exact match with its interval, the served one marked."""
    lines = []
    for arm in DEMO_ARMS:
        if not scores.has_arm(arm):
            continue
        a = scores.arm(arm)
        lo, hi = a.exact_match_ci95
        mark = "  ← served" if arm == served_arm else ""
        lines.append(
            f"    {arm:<14} exact match {a.exact_match:.3f} [{lo:.3f}, {hi:.3f}], edit similarity "
            f"{a.edit_similarity:.3f}{mark}"
        )
    return lines


def _admin_user_ensure() -> str:
    """A superuser for the demo's admin link: the new password, or "" when one exists already."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return ""
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser("admin", "", password)
    return password


def demo_report_lines(result: DemoResult) -> list[str]:
    """What the demo prints before its JSON line, for a person."""
    p = result.pipeline
    scores, mode = p.report.scores, p.report.scores.mode
    base, tuned = scores.headline("base"), scores.headline("candidate")
    repo = p.repositories[0]
    lines = [
        (
            f"  repository        {repo.name} @ {repo.head_sha[:12]} ({p.dataset.train_files} train / "
            f"{p.dataset.heldout_files} held-out files)"
        ),
        (
            f"  training          {p.run.method} on {p.run.device}, {p.run.summary.get('steps')} steps, "
            f"{p.run.summary.get('tokens_per_s')} tok/s"
        ),
        f"  held-out lines    {base.tasks} tasks, {mode} mode",
        f"  exact match       base {base.exact_match:.3f} → tuned {tuned.exact_match:.3f}",
        *_arm_lines(scores, p.version.served_arm or "tuned"),
        f"  edit similarity   base {base.edit_similarity:.3f} → tuned {tuned.edit_similarity:.3f}",
        (
            f"  perplexity        base {scores.models['base'].perplexity:.2f} → tuned "
            f"{scores.models['candidate'].perplexity:.2f}"
        ),
    ]
    if mode != "fim" and scores.has("candidate", "fim"):
        fim = scores.headline("candidate", "fim")
        lines.append(
            f"  tuned FIM mode    exact match {fim.exact_match:.3f}, edit similarity "
            f"{fim.edit_similarity:.3f} (the base cannot infill)"
        )
    live = result.live
    lines += [
        f"  decision          {p.report.decision}",
        f"  GGUF              {p.version.gguf_path}",
        f"  live completion   {live.path}:{live.line_no} …{live.typed!r} ⟶ {live.completion!r}",
        f"  the file has      {live.target!r}",
        "",
        "To keep Hearth running: `make serve` (engine, web and job worker), then point an IDE at",
        f"  OpenAI completions base URL  {result.base_url}",
        f"  token                        {result.token}",
        f"  admin                        {result.base_url.removesuffix('/v1')}/admin/ "
        + (
            f"(user admin, password {result.admin_password})"
            if result.admin_password
            else "(existing admin user)"
        ),
    ]
    return lines
