"""`hearth restore ARCHIVE`: put a `hearth backup` archive back, into this or a fresh instance."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Restore a `hearth backup` archive into this instance: its instance files (its keys too, unless it "
        "was made --without-keys: then this instance keeps its own, and stored git credentials need the "
        "original key), its database into this instance's own database, then migrations; stored paths move "
        "to this HEARTH_HOME. An archive whose manifest or members point elsewhere is refused. Stop the "
        "services first and start them after."
    )

    def add_arguments(self, parser):
        parser.add_argument("archive", type=Path, help="The archive `hearth backup` wrote.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace an instance that already has repositories, datasets, models or tokens.",
        )

    def handle(self, *args, **opts):
        from appliance.backup import backup_restore

        try:
            manifest = backup_restore(opts["archive"], force=opts["force"], log=self.stdout.write)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored the backup of {manifest['home']} made {manifest['created_at']} (Hearth "
                f"{manifest['hearth_version']}). Restart Hearth's services."
            )
        )
