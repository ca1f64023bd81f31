from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = "Build Hearth's micro model (tiny Llama + SentencePiece with FIM tokens) from the Python stdlib, in seconds."

    def add_arguments(self, parser):
        parser.add_argument(
            "--seed", type=int, default=0, help="Seed; the same seed gives byte-identical files."
        )

    def handle(self, *args, **opts):
        from trainer.basemodels.services import basemodel_bootstrap

        try:
            base = basemodel_bootstrap(seed=opts["seed"], log=self.stdout.write)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Base model {base.slug} ready: {base.hf_path}"))
