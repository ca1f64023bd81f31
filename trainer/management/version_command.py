"""Shared shape of the model-version lifecycle commands (promote, retire, delete)."""

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class VersionCommand(BaseCommand):
    action = ""

    def add_arguments(self, parser):
        parser.add_argument("version", type=int, help="Model version id (see model_list).")
        if self.action == "promote":
            parser.add_argument(
                "--reason",
                default="",
                help="Why to serve a version the promotion gate kept (required then; audited and sent to "
                "every admin).",
            )

    def handle(self, *args, **opts):
        from trainer import versions
        from trainer.models import ModelVersion

        version = ModelVersion.objects.filter(pk=opts["version"]).first()
        if version is None:
            raise CommandError(f"No model version {opts['version']}.")
        try:
            kwargs = {"reason": opts["reason"], "actor": "manage.py"} if self.action == "promote" else {}
            getattr(versions, f"model_version_{self.action}")(version=version, **kwargs)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Version {opts['version']}: {self.action} done."))
