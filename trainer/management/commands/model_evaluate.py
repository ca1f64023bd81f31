from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Score a model version against the base (and the served model) on held-out lines: exact match, "
        "edit similarity, perplexity. --repo scores on extra repositories no model trained on."
    )

    def add_arguments(self, parser):
        parser.add_argument("--version", type=int, help="Model version id (default: the served one).")
        parser.add_argument("--base", help="Score only this base model (slug), no fine-tuned version.")
        parser.add_argument(
            "--dataset", type=int, help="Dataset id (default: the version's training dataset)."
        )
        parser.add_argument(
            "--repo",
            action="append",
            default=[],
            help="Extra evaluation repository (registered name); all its files are scored.",
        )
        parser.add_argument("--max-tasks", type=int, default=300, help="Line tasks to score.")

    def handle(self, *args, **opts):
        from trainer.datasets.services import dataset_build
        from trainer.evaluation.services import evaluation_run
        from trainer.models import BaseModel, Dataset, ModelVersion, Repository
        from trainer.versions import served_version

        version = base = None
        if opts["base"]:
            base = BaseModel.objects.filter(slug=opts["base"]).first()
            if base is None:
                raise CommandError(f"No base model {opts['base']!r}.")
        else:
            version = (
                ModelVersion.objects.filter(pk=opts["version"]).first()
                if opts["version"]
                else served_version()
            )
            if version is None:
                raise CommandError("No model version given and none is served; pass --version or --base.")
        splits = ("heldout",)
        try:
            if opts["repo"]:
                repos = list(Repository.objects.filter(name__in=opts["repo"]))
                if len(repos) != len(set(opts["repo"])):
                    raise CommandError(
                        f"Unknown repositories among {', '.join(opts['repo'])} (add them with mirror_add)."
                    )
                dataset, splits = dataset_build(repositories=repos), ("train", "heldout")
            elif opts["dataset"]:
                dataset = Dataset.objects.get(pk=opts["dataset"])
            elif version is not None:
                dataset = version.run.dataset
            else:
                raise CommandError("With --base, give --dataset or --repo.")
            report = evaluation_run(
                dataset=dataset,
                version=version,
                base=base,
                max_tasks=opts["max_tasks"],
                splits=splits,
                log=self.stdout.write,
            )
        except (HearthError, Dataset.DoesNotExist) as exc:
            raise CommandError(str(exc)) from exc
        scores = report.scores
        for label, model in scores.models.items():
            lc = scores.headline(label)
            lo, hi = lc.exact_match_ci95
            self.stdout.write(
                f"{label:<10} exact match {lc.exact_match:.3f} [{lo:.3f}, {hi:.3f}]  "
                f"edit similarity {lc.edit_similarity:.3f}  perplexity {model.perplexity:.2f}  "
                f"({scores.mode} mode, {lc.tasks} tasks)"
            )
        self.stdout.write(self.style.SUCCESS(f"Report {report.pk} stored."))
