from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "List model versions with their status and evaluation numbers."

    def handle(self, *args, **opts):
        from trainer.models import ModelVersion

        for v in ModelVersion.objects.select_related("base", "run").order_by("pk"):
            report = v.reports.order_by("-created_at").first()
            score = ""
            if report:
                scores = report.scores
                if scores.has("candidate"):
                    score = f"exact match {scores.headline('candidate').exact_match:.3f} ({scores.mode})"
            self.stdout.write(f"v{v.pk:<4} {v.status:<10} base={v.base.slug:<24} run={v.run_id:<4} {score}")
