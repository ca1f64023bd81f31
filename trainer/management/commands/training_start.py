"""`training_start`: build a dataset from ready repositories and fine-tune a base on it, following
the run with a progress bar. The flags for the training settings come from LoraSettings."""

from dataclasses import MISSING, fields

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError
from trainer.training.config import LoraSettings


def _flag_type(f):
    if str(f.type) == "bool":
        return lambda v: v.lower() in {"1", "true", "yes", "on"}
    return {"int": int, "float": float}.get(str(f.type), str)


def method_line(run) -> str:
    """The run's method and why it was chosen, as its training stage logged it."""
    reason = (run.summary or {}).get("method_reason") or next(
        (
            ln.split(" — ", 1)[1]
            for ln in reversed(run.log.splitlines())
            if f"{run.method} on " in ln and " — " in ln
        ),
        "",
    )
    return f"{run.method} on {run.device}" + (f" ({reason})" if reason else "")


class Command(BaseCommand):
    help = (
        "Start a custom model: a dataset from ready repositories, then a fine-tune as a job (a worker must "
        "run: manage.py serve or qcluster), followed with a progress bar until its version is gated."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--repo", action="append", default=[], help="Repository name (repeat); default: all ready."
        )
        parser.add_argument("--base", default="hearth-micro", help="Base model slug (default: %(default)s).")
        parser.add_argument(
            "--language", action="append", default=[], help="Language to keep (repeat); default: all."
        )
        parser.add_argument(
            "--exclude", action="append", default=[], help="Glob to leave out (gitignore syntax)."
        )
        parser.add_argument(
            "--accepted-completions",
            action="store_true",
            help="Include the completions developers accepted within the telemetry retention window (28 days "
            "unless the Policies page says otherwise) as training-only samples; needs a telemetry policy that "
            "collects content.",
        )
        parser.add_argument(
            "--override-reason", default="", help="Start despite the retrain rate limit, saying why."
        )
        parser.add_argument("--no-follow", action="store_true", help="Queue the run and return.")
        for f in fields(LoraSettings):
            default = f.default if f.default is not MISSING else None
            parser.add_argument(
                f"--{f.name.replace('_', '-')}",
                dest=f"lora_{f.name}",
                type=_flag_type(f),
                default=default,
                choices=f.metadata.get("choices"),
                help=f"{f.metadata.get('help', '')} (default: {default})",
            )

    def handle(self, *args, **opts):
        from trainer.datasets.accepted import accepted_refusal
        from trainer.datasets.builder import DatasetOptions
        from trainer.models import Repository
        from trainer.pipeline import base_model_resolve, training_start

        if opts["accepted_completions"] and (refusal := accepted_refusal()):
            raise CommandError(refusal)
        ready = Repository.objects.filter(status=Repository.Status.READY)
        repos = list(ready.filter(name__in=opts["repo"]) if opts["repo"] else ready)
        missing = sorted(set(opts["repo"]) - {r.name for r in repos})
        if missing or not repos:
            raise CommandError(
                f"Not ready (or unknown): {', '.join(missing) or 'no ready repository at all'}."
            )
        try:
            settings = LoraSettings.from_dict({f.name: opts[f"lora_{f.name}"] for f in fields(LoraSettings)})
            base = base_model_resolve(slug=opts["base"], log=self.stdout.write)
            run = training_start(
                repositories=repos,
                base=base,
                settings=settings,
                override_reason=opts["override_reason"],
                options=DatasetOptions(
                    languages=tuple(opts["language"]),
                    exclude_globs=tuple(opts["exclude"]),
                    accepted_completions=opts["accepted_completions"],
                ),
                actor="manage.py",
            )
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Training run {run.pk} queued on dataset {run.dataset_id} ({run.dataset.train_files} "
            f"training files); method {settings.method}"
            f"{' (full fine-tuning where it fits the memory, else LoRA, else QLoRA)' if settings.method == 'auto' else ''}."
        )
        if not opts["no_follow"]:
            self._follow(run)

    def _follow(self, run) -> None:
        from tqdm import tqdm

        from trainer.datasets.accepted import accepted_used
        from trainer.pipeline import run_follow

        bar = tqdm(total=None, unit="step", desc=f"run {run.pk}", file=self.stderr._out)
        said: list[str] = []

        def log(line: str) -> None:
            if run.method and not said:  # run_follow refreshes `run`: the method is chosen as it starts
                said.append(run.method)
                bar.write(f"method: {method_line(run)}", file=self.stdout._out)
            run.refresh_from_db(fields=["step", "total_steps"])
            if run.total_steps and bar.total != run.total_steps:
                bar.total = run.total_steps
            bar.n = run.step
            bar.set_postfix_str(line[:80])
            bar.refresh()

        try:
            version = run_follow(run, log=log)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        run.refresh_from_db()
        if not said:
            self.stdout.write(f"method: {method_line(run)}")
        if used := accepted_used(run.summary or {}):
            self.stdout.write(f"Training {used}.")
        report = version.reports.order_by("-created_at").first()
        self.stdout.write(
            self.style.SUCCESS(
                f"Model version {version.pk}: {version.status}. {report.decision if report else ''}"
            )
        )
