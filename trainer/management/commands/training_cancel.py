from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Cancel a queued or running training run (a running one stops at its next step, after a checkpoint)."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", type=int, help="Training run id.")

    def handle(self, *args, **opts):
        from trainer.models import TrainingRun
        from trainer.training.services import training_run_cancel

        run = TrainingRun.objects.filter(pk=opts["run"]).first()
        if run is None:
            raise CommandError(f"No training run {opts['run']}.")
        try:
            training_run_cancel(run=run)
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Run {run.pk}: cancel requested ({run.status})."))
