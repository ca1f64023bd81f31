from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Add files to the blocked-code corpus: suggestions sharing 150+ whitespace-stripped characters "
        "with them are discarded."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="Text files (or folders, read recursively) to block.")
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be added.")

    def handle(self, *args, **opts):
        from inference.models import BlockedCode
        from inference.policy import serving_rules_clear

        files = []
        for raw in opts["paths"]:
            path = Path(raw)
            if not path.exists():
                raise CommandError(f"{path} does not exist.")
            files += [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
        added = 0
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                self.stderr.write(f"skipped {path}: not UTF-8 text")
                continue
            if not opts["dry_run"]:
                BlockedCode.objects.create(name=str(path)[:200], text=text)
            added += 1
        serving_rules_clear()
        self.stdout.write(
            f"{'would add' if opts['dry_run'] else 'added'} {added} file(s) to the blocked-code corpus"
        )
