from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Build a training dataset from mirrored repositories at their current commit: filter, scrub secrets, "
        "deduplicate, split, and print the report."
    )

    def add_arguments(self, parser):
        from trainer.datasets.builder import DatasetOptions

        d = DatasetOptions()
        parser.add_argument("names", nargs="*", help="Repositories to read.")
        parser.add_argument("--all", action="store_true", help="Read every ready repository.")
        parser.add_argument(
            "--heldout-percent",
            type=int,
            default=d.heldout_percent,
            help="Share of files held out for evaluation.",
        )
        parser.add_argument(
            "--max-file-bytes", type=int, default=d.max_file_bytes, help="Larger files are skipped."
        )
        parser.add_argument(
            "--languages",
            default="",
            help="Comma-separated languages to keep (default: every recognised source language).",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="PATTERN",
            help="Leave matching files out (gitignore syntax); repeatable; adds to each "
            "repository's own list and the global exclusion (Policies page; default HEARTH_DATASET_EXCLUDE).",
        )
        parser.add_argument(
            "--min-tokens",
            type=int,
            default=d.min_tokens,
            help="Fail when fewer tokens (estimated) are left after filtering.",
        )
        parser.add_argument(
            "--max-duplicate-ratio",
            type=float,
            default=d.max_duplicate_ratio,
            help="Fail when a larger share of the files are copies or near-copies.",
        )
        parser.add_argument(
            "--near-dup-threshold",
            type=float,
            default=d.near_dup_threshold,
            help="Jaccard similarity (MinHash over 5-token shingles) above which files are twins.",
        )
        parser.add_argument(
            "--keep-near-duplicates",
            action="store_true",
            help="Keep near-duplicates (on the same side of the split) instead of dropping them.",
        )

    def handle(self, *args, **opts):
        from tqdm import tqdm

        from trainer.datasets.builder import DatasetOptions
        from trainer.datasets.services import dataset_create, dataset_execute
        from trainer.models import Repository

        if opts["all"] == bool(opts["names"]):
            raise CommandError("Give repository names or --all.")
        if opts["all"]:
            repos = list(Repository.objects.filter(status=Repository.Status.READY))
        else:
            repos = list(Repository.objects.filter(name__in=opts["names"]))
            missing = set(opts["names"]) - {r.name for r in repos}
            if missing:
                raise CommandError(
                    f"Unknown repositories: {', '.join(sorted(missing))} (add them with mirror_add)."
                )
        bar = tqdm(desc="files", unit="file", file=self.stderr, disable=None)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            options = DatasetOptions(
                heldout_percent=opts["heldout_percent"],
                max_file_bytes=opts["max_file_bytes"],
                languages=tuple(x.strip() for x in opts["languages"].split(",") if x.strip()),
                exclude_globs=tuple(opts["exclude"]),
                min_tokens=opts["min_tokens"],
                max_duplicate_ratio=opts["max_duplicate_ratio"],
                near_dup_threshold=opts["near_dup_threshold"],
                near_duplicates="keep" if opts["keep_near_duplicates"] else "drop",
            )
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        dataset = dataset_create(repositories=repos, options=options)
        try:
            dataset_execute(dataset=dataset, progress=progress)
        except HearthError as exc:
            bar.close()
            dataset.refresh_from_db()
            if dataset.report:  # this build's own report: what was read and why it was not enough
                self._summary(dataset.report)
            raise CommandError(f"Dataset {dataset.pk} failed: {exc}") from exc
        bar.close()
        self._summary(dataset.report)
        self.stdout.write(
            self.style.SUCCESS(
                f"Dataset {dataset.pk}: {dataset.train_files} training files ({dataset.train_bytes:,} bytes), "
                f"{dataset.heldout_files} held out, in {dataset.path}"
            )
        )

    def _summary(self, report: dict) -> None:
        w = self.stdout.write
        w(
            f"Read {report['seen_files']:,} files ({report['seen_bytes']:,} bytes) at "
            + ", ".join(f"{k}@{v[:12]}" for k, v in report["commits"].items())
        )
        w(
            f"Kept {report['kept_files']:,} files ({report['kept_bytes']:,} bytes), "
            f"about {report['tokens']['total']:,} tokens ({report['tokens']['method']})"
        )
        if report["skipped"]:
            w("Left out:")
            for reason, count in report["skipped"].items():
                w(f"  {reason:<18} {count:>7,} files {report['skipped_bytes'].get(reason, 0):>14,} bytes")
        if report["by_language"]:
            w("Languages kept:")
            for lang, c in sorted(report["by_language"].items(), key=lambda kv: -kv[1]["files"]):
                w(f"  {lang:<18} {c['files']:>7,} files {c['bytes']:>14,} bytes {c['tokens']:>12,} tokens")
        d = report["duplicates"]
        w(
            f"Duplicates: {d['exact']} exact, {d['near']} near (threshold {d['near_threshold']}), "
            f"ratio {d['ratio']:.1%} of {d['checked_files']} files"
        )
        s = report["secrets"]
        kinds = ", ".join(f"{k} {v}" for k, v in s["by_kind"].items()) or "none"
        w(f"Secrets scrubbed: {s['total']} in {s['files']} files ({kinds})")
