"""`hearth backup`: the database and the instance directory in one tar archive with a manifest."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Back up the database (SQLite online backup, or pg_dump on PostgreSQL) and the instance directory "
        "(mirrors, datasets, runs, models, keys) into one tar archive with a manifest.json. Safe while "
        "Hearth runs. The archive holds the users' code, password and token hashes, the git credentials "
        "(encrypted) and, unless --without-keys, the keys that decrypt them: keep it as private as the "
        "instance."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            "-o",
            type=Path,
            help="Archive to write (default: HEARTH_HOME/backups/hearth-backup-<time>.tar).",
        )
        parser.add_argument(
            "--without-keys",
            action="store_true",
            help="Leave the key material out (HEARTH_HOME/secret_key, which signs sessions and from which "
            "the credential key is derived unless HEARTH_CREDENTIAL_KEY is set; engine_secret; tls/). The "
            "stored git credentials in the archive then decrypt only with that key, kept elsewhere.",
        )

    def handle(self, *args, **opts):
        from appliance.backup import backup_create

        try:
            path = backup_create(opts["output"], without_keys=opts["without_keys"], log=self.stdout.write)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(str(path)))
