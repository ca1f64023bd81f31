from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Start a custom model: build a dataset from ready repositories and queue a fine-tune of a base model "
        "(a running worker trains it: `make serve`). Then follows it with a progress bar unless --no-follow."
    )

    def add_arguments(self, parser):
        from django.conf import settings

        parser.add_argument("names", nargs="*", help="Repositories to learn from.")
        parser.add_argument("--all", action="store_true", help="Every ready repository.")
        parser.add_argument("--base", default=settings.HEARTH_BASE_MODEL, help="Slug of a ready base model.")
        parser.add_argument("--preset", default="standard", help="quick, standard or thorough (passes over the data).")
        parser.add_argument("--max-steps", type=int, default=0, help="Cap on optimizer steps (0: the preset's).")
        parser.add_argument("--languages", default="", help="Comma-separated languages to keep (default: all).")
        parser.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                            help="Leave matching files out (gitignore syntax); repeatable.")
        parser.add_argument("--override-reason", default="",
                            help="Start despite the retrain rate limit, for this reason (recorded in the audit log).")
        parser.add_argument("--no-follow", action="store_true", help="Queue the run and return at once.")

    def handle(self, *args, **opts):
        from trainer.datasets.builder import DatasetOptions
        from trainer.models import BaseModel, Repository
        from trainer.pipeline import training_start
        from trainer.training.config import LoraSettings

        if opts["all"] == bool(opts["names"]):
            raise CommandError("Give repository names or --all.")
        ready = Repository.objects.filter(status=Repository.Status.READY)
        repos = list(ready if opts["all"] else ready.filter(name__in=opts["names"]))
        missing = set(opts["names"]) - {r.name for r in repos}
        if missing or not repos:
            raise CommandError(f"No ready repository named {', '.join(sorted(missing)) or '(none ready)'}: "
                               "add and sync it with mirror_add / mirror_sync.")
        base = BaseModel.objects.filter(slug=opts["base"], status=BaseModel.Status.READY).first()
        if base is None:
            raise CommandError(f"No ready base model {opts['base']!r} (basemodel_fetch, basemodel_import).")
        try:
            lora = LoraSettings(preset=opts["preset"], max_steps=opts["max_steps"])
            options = DatasetOptions(languages=tuple(x.strip() for x in opts["languages"].split(",") if x.strip()),
                                     exclude_globs=tuple(opts["exclude"]))
            run = training_start(repositories=repos, base=base, settings=lora, options=options,
                                 override_reason=opts["override_reason"], actor="command line")
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Training run {run.pk} queued on dataset {run.dataset_id} "
                          f"({run.dataset.train_files} training files).")
        if not opts["no_follow"]:
            self._follow(run)

    def _follow(self, run) -> None:
        from tqdm import tqdm

        from trainer.pipeline import run_follow

        bar = tqdm(desc=f"run {run.pk}", unit="step", file=self.stderr, disable=None)

        def on_point(point) -> None:
            bar.total = point.total_steps
            bar.n = point.step
            bar.set_postfix_str(point.describe().split(", ", 1)[-1])
            bar.refresh()

        try:
            version = run_follow(run, log=lambda line: bar.write(line, file=self.stdout), on_point=on_point)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        report = version.reports.order_by("-created_at").first()
        self.stdout.write(self.style.SUCCESS(f"Model version {version.pk}: {version.status}. "
                                             f"{report.decision if report else ''}"))
