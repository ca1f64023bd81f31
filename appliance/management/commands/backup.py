"""`hearth backup`: the database and the instance directory in one tar archive with a manifest."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Back up the database (SQLite online backup, or pg_dump on PostgreSQL) and the instance directory "
        "(mirrors, datasets, runs, models, keys) into one tar archive with a manifest.json. Safe while "
        "Hearth runs."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            "-o",
            type=Path,
            help="Archive to write (default: HEARTH_HOME/backups/hearth-backup-<time>.tar).",
        )

    def handle(self, *args, **opts):
        from appliance.backup import backup_create

        try:
            path = backup_create(opts["output"], log=self.stdout.write)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(str(path)))
