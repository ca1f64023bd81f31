"""Try a candidate on a share of developers from a shell: start it, change its share, read the live
comparison, or roll it back (what the version's canary page does)."""

import json

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "A canary: serve a candidate to a share of developers (--percent), show how their acceptance "
        "compares with the served model's (no option), or roll it back (--rollback)."
    )

    def add_arguments(self, parser):
        parser.add_argument("version", type=int, help="Model version id (see model_list).")
        parser.add_argument(
            "--percent", type=int, help="Share of developers, 1–99 (starts or resizes the canary)."
        )
        parser.add_argument(
            "--reason", default="", help="Why, when the promotion gate did not pass the version."
        )
        parser.add_argument(
            "--rollback", action="store_true", help="End the canary: everyone gets the served model."
        )

    def handle(self, *args, **opts):
        from inference.canary import canary_comparison
        from trainer.models import ModelVersion
        from trainer.versions import model_version_canary_end, model_version_canary_start

        version = ModelVersion.objects.filter(pk=opts["version"]).first()
        if version is None:
            raise CommandError(f"No model version {opts['version']}.")
        try:
            if opts["rollback"]:
                model_version_canary_end(version=version, actor="manage.py")
                self.stdout.write(self.style.SUCCESS(f"Version {version.pk}: rolled back."))
                return
            if opts["percent"] is not None:
                model_version_canary_start(
                    version=version, percent=opts["percent"], reason=opts["reason"], actor="manage.py"
                )
                self.stdout.write(
                    self.style.SUCCESS(f"Version {version.pk} is served to {opts['percent']}% of developers.")
                )
                return
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        if not version.is_canary:
            raise CommandError(f"Version {version.pk} is not a canary; start one with --percent.")
        figures, comparison = canary_comparison(version)
        self.stdout.write(comparison.sentence)
        self.stdout.write(
            json.dumps({"percent": version.canary_percent, "verdict": comparison.verdict, **figures})
        )
