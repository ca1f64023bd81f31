from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = "Build a training dataset from mirrored repositories at their current commit."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="+", help="Repositories to read.")
        parser.add_argument("--heldout-percent", type=int, default=15, help="Share of files held out for evaluation.")
        parser.add_argument("--max-file-bytes", type=int, default=1_000_000, help="Larger files are skipped.")

    def handle(self, *args, **opts):
        from tqdm import tqdm

        from trainer.datasets.builder import DatasetOptions
        from trainer.datasets.services import dataset_build
        from trainer.models import Repository

        repos = list(Repository.objects.filter(name__in=opts["names"]))
        missing = set(opts["names"]) - {r.name for r in repos}
        if missing:
            raise CommandError(f"Unknown repositories: {', '.join(sorted(missing))} (add them with mirror_add).")
        bar = tqdm(desc="files", unit="file", file=self.stderr, disable=None)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            options = DatasetOptions(heldout_percent=opts["heldout_percent"], max_file_bytes=opts["max_file_bytes"])
            dataset = dataset_build(repositories=repos, options=options, progress=progress)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        skipped = dataset.report.get("skipped", {})
        self.stdout.write(self.style.SUCCESS(
            f"Dataset {dataset.pk}: {dataset.train_files} training files ({dataset.train_bytes:,} bytes), "
            f"{dataset.heldout_files} held out; skipped {sum(skipped.values())} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(skipped.items())) or 'none'})"
        ))
