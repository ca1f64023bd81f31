"""Shared shape of the model-version lifecycle commands (promote, retire, delete)."""

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class VersionCommand(BaseCommand):
    action = ""

    def add_arguments(self, parser):
        parser.add_argument("version", type=int, help="Model version id (see model_list).")

    def handle(self, *args, **opts):
        from trainer import versions
        from trainer.models import ModelVersion

        version = ModelVersion.objects.filter(pk=opts["version"]).first()
        if version is None:
            raise CommandError(f"No model version {opts['version']}.")
        try:
            getattr(versions, f"model_version_{self.action}")(version=version)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Version {opts['version']}: {self.action} done."))
