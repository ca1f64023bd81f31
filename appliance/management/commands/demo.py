"""`make demo`: a real repository → dataset → fine-tune (through qcluster) → evaluation → GGUF →
served completions through the OpenAI client. Ends with one JSON line."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = "Run Hearth end to end on a git repository with the embedded default base model."

    def add_arguments(self, parser):
        parser.add_argument("--repo", default=str(settings.BASE_DIR), help="Git repository to learn from.")
        parser.add_argument("--base", default=settings.HEARTH_BASE_MODEL,
                            help="Base model slug (default: SmolLM2-135M-Instruct from its carrier package).")
        parser.add_argument("--max-steps", type=int, default=90, help="Cap on optimizer steps (fits ~30 min on 2 cores).")
        parser.add_argument("--preset", default="thorough", help="quick, standard or thorough (passes over the data).")
        parser.add_argument("--max-tasks", type=int, default=300, help="Held-out line tasks to score.")
        parser.add_argument("--serve", action="store_true", help="Keep the engine and web server running at the end.")
        parser.add_argument("--port", type=int, default=settings.HEARTH_WEB_PORT, help="Web port.")

    def say(self, msg: str) -> None:
        self.stdout.write(f"[{time.monotonic() - self.t0:7.1f}s] {msg}")
        self.stdout.flush()

    def handle(self, *args, **opts):
        from appliance.processes import Services, sigterm_as_interrupt

        self.t0 = time.monotonic()
        services = Services()
        sigterm_as_interrupt()
        try:
            result = self._run(opts, services)
        except HearthError as exc:
            services.stop()
            raise CommandError(str(exc)) from exc
        except BaseException:
            services.stop()
            raise
        if opts["serve"]:
            self.stdout.write("Serving until Ctrl-C.")
            try:
                while True:
                    services.check_alive()
                    time.sleep(2)
            except KeyboardInterrupt:
                pass
        services.stop()
        self.stdout.write(json.dumps(result))

    def _run(self, opts, services) -> dict:
        from trainer.basemodels.services import basemodel_bootstrap, basemodel_fetch_default
        from trainer.datasets.services import dataset_build
        from trainer.mirrors.services import repository_register, repository_sync
        from trainer.models import BaseModel, Repository
        from trainer.training.config import LoraSettings

        self.say("1/6 base model")
        if opts["base"] == "smollm2-135m-instruct":
            base = basemodel_fetch_default(log=self.say)
        elif opts["base"].startswith("hearth-micro"):
            base = basemodel_bootstrap(log=self.say)
        else:
            base = BaseModel.objects.filter(slug=opts["base"], status=BaseModel.Status.READY).first()
            if base is None:
                raise CommandError(f"No ready base model {opts['base']!r}.")
        self.say(f"    {base.display_name}; can infill: {base.can_infill}")

        self.say(f"2/6 mirror {opts['repo']}")
        source = str(Path(opts["repo"]).expanduser().resolve())
        repo = Repository.objects.filter(source=source).first()
        repo = repository_sync(repo=repo) if repo else repository_register(source=source)
        self.say(f"    {repo.name}: {repo.default_branch} at {repo.head_sha[:12]}")

        self.say("3/6 dataset")
        dataset = dataset_build(repositories=[repo])
        self.say(f"    {dataset.train_files} training files ({dataset.train_bytes:,} bytes), "
                 f"{dataset.heldout_files} held out, {sum(dataset.report['skipped'].values())} skipped")

        self.say("4/6 fine-tune (django-q2 job on a qcluster started for the demo)")
        services.start_qcluster()
        from trainer.training.services import training_run_start

        lora = LoraSettings(preset=opts["preset"], max_steps=opts["max_steps"])
        run = training_run_start(dataset=dataset, base=base, settings=lora, force=True)
        version = self._follow(run, services)

        self.say("6/6 serve: engine + web, then a live request with the openai client")
        from inference.auth import token_create

        services.start_engine()
        services.start_web(opts["port"])
        from appliance.processes import wait_http, web_url

        expected = f"hearth-v{version.pk}" if version.status == "promoted" else base.slug
        engine_url = f"http://{settings.HEARTH_ENGINE_HOST}:{settings.HEARTH_ENGINE_PORT}/health"
        wait_http(engine_url, timeout=120, accept=lambda h: h.get("model") == expected, services=services)
        _, raw = token_create(username="demo", name="make demo")
        web = web_url(opts["port"])
        base_url = f"{web}/v1"
        wait_http(f"{web}/ready", timeout=60, services=services)
        completion, target, prefix_tail = self._live_request(base_url, raw, dataset)
        report = version.reports.order_by("-created_at").first()
        models = report.metrics["models"]
        mode = report.metrics["mode"]
        base_lc = models["base"]["line_completion"][mode]
        tuned_lc = models["candidate"]["line_completion"][mode]
        admin_password = self._admin_user()
        seconds = round(time.monotonic() - self.t0, 1)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Hearth demo finished"))
        self.stdout.write(f"  repository        {repo.name} @ {repo.head_sha[:12]} ({dataset.train_files} train / "
                          f"{dataset.heldout_files} held-out files)")
        self.stdout.write(f"  training          {run.method} on {run.device}, {run.summary.get('steps')} steps, "
                          f"{run.summary.get('tokens_per_s')} tok/s")
        self.stdout.write(f"  held-out lines    {base_lc['tasks']} tasks, {mode} mode")
        self.stdout.write(f"  exact match       base {base_lc['exact_match']:.3f} → tuned {tuned_lc['exact_match']:.3f}")
        self.stdout.write(f"  edit similarity   base {base_lc['edit_similarity']:.3f} → tuned {tuned_lc['edit_similarity']:.3f}")
        self.stdout.write(f"  perplexity        base {models['base']['perplexity']['perplexity']:.2f} → tuned "
                          f"{models['candidate']['perplexity']['perplexity']:.2f}")
        if "fim" in models["candidate"]["line_completion"] and mode != "fim":
            fim = models["candidate"]["line_completion"]["fim"]
            self.stdout.write(f"  tuned FIM mode    exact match {fim['exact_match']:.3f}, edit similarity "
                              f"{fim['edit_similarity']:.3f} (the base cannot infill)")
        self.stdout.write(f"  decision          {report.decision}")
        self.stdout.write(f"  GGUF              {version.gguf_path}")
        self.stdout.write(f"  live completion   …{prefix_tail!r} ⟶ {completion!r} (held-out line: {target!r})")
        self.stdout.write("")
        self.stdout.write("To keep Hearth running: `make serve` (engine, web and job worker), then point an IDE at")
        self.stdout.write(f"  OpenAI completions base URL  {base_url}")
        self.stdout.write(f"  token                        {raw}")
        self.stdout.write(f"  admin                        {web_url(opts['port'])}/admin/ "
                          + (f"(user admin, password {admin_password})" if admin_password else "(existing admin user)"))
        return {
            "base_exact_match": round(base_lc["exact_match"], 4),
            "tuned_exact_match": round(tuned_lc["exact_match"], 4),
            "base_edit_similarity": round(base_lc["edit_similarity"], 4),
            "tuned_edit_similarity": round(tuned_lc["edit_similarity"], 4),
            "base_perplexity": round(models["base"]["perplexity"]["perplexity"], 3),
            "tuned_perplexity": round(models["candidate"]["perplexity"]["perplexity"], 3),
            "mode": mode,
            "tasks": base_lc["tasks"],
            "promoted": version.status == "promoted",
            "gguf": version.gguf_path,
            "gguf_sha256": version.gguf_sha256,
            "completion": completion,
            "training_tokens_per_s": run.summary.get("tokens_per_s"),
            "seconds": seconds,
        }

    def _follow(self, run, services):
        from trainer.models import ModelVersion, TrainingRun

        last_step, last_log = -1, 0
        while True:
            services.check_alive()
            run.refresh_from_db()
            point = run.progress.order_by("-id").first()
            if point and point.step != last_step:
                last_step = point.step
                eta = f", ETA {point.eta_s / 60:.1f} min" if point.eta_s else ""
                ev = f", held-out loss {point.eval_loss:.3f}" if point.eval_loss is not None else ""
                self.say(f"    step {point.step}/{point.total_steps} loss {point.loss:.3f}{ev}, "
                         f"{point.tokens_per_s:.0f} tok/s{eta}")
            if run.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
                raise CommandError(f"Training {run.status}: {run.status_reason}")
            if run.status == TrainingRun.Status.SUCCEEDED:
                break
            time.sleep(2)
        self.say("5/6 export to GGUF, evaluate against the base on held-out lines, promotion gate")
        while True:
            services.check_alive()
            version = ModelVersion.objects.filter(run=run).first()
            if version:
                lines = version.log.splitlines()
                for line in lines[last_log:]:
                    self.say("    " + line[20:])
                last_log = len(lines)
                if version.status not in (ModelVersion.Status.BUILDING,):
                    if version.status == ModelVersion.Status.FAILED:
                        raise CommandError(f"Model version failed: {version.status_reason}")
                    return version
            time.sleep(2)

    def _live_request(self, base_url: str, token: str, dataset) -> tuple[str, str, str]:
        from openai import DefaultHttpxClient, OpenAI

        from trainer.datasets.builder import dataset_files_read
        from trainer.evaluation.tasks import line_tasks_build

        task = line_tasks_build(dataset_files_read(Path(dataset.path), "heldout"), max_tasks=1)[0]
        # As an IDE asks while the developer types: the held-out line's first word is already typed.
        typed = re.match(r"\s*\S+?(?=\W|$)", task.target) or re.match(r"\s*\S*", task.target)
        prefix = "\n".join(task.prefix.split("\n")[-30:]) + typed.group(0)
        suffix = "\n".join(task.suffix.split("\n")[:15])
        http_client = None
        if base_url.startswith("https:"):
            # Our own server on loopback, possibly with a self-signed certificate.
            http_client = DefaultHttpxClient(verify=False, timeout=120)
        client = OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=120, http_client=http_client)
        models = client.models.list()
        response = client.completions.create(
            model=models.data[0].id, prompt=prefix, suffix=suffix, max_tokens=32, temperature=0, stop=["\n"]
        )
        return response.choices[0].text, task.target, prefix[-40:]

    def _admin_user(self) -> str:
        from django.contrib.auth import get_user_model

        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return ""
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "", password)
        return password
