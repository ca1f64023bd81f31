from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Import a base model from a local Hugging Face folder (safetensors only; remote code never runs; "
        "the architecture must be one the GGUF converter supports)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "path", type=Path, help="Folder with config.json, *.safetensors and the tokenizer."
        )
        parser.add_argument(
            "--slug", default="", help="Name of the base in Hearth (default: the folder name)."
        )

    def handle(self, *args, **opts):
        from trainer.basemodels.services import basemodel_import

        try:
            base = basemodel_import(path=opts["path"], slug=opts["slug"], log=self.stdout.write)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        infill = (
            f"FIM format {base.fim_format}" if base.can_infill else "no FIM tokens (fine-tuning adds them)"
        )
        self.stdout.write(self.style.SUCCESS(f"Base model {base.slug} ready: {base.architecture}, {infill}"))
