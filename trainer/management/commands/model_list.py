from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "List model versions with their status and evaluation numbers."

    def handle(self, *args, **opts):
        from trainer.models import ModelVersion

        for v in ModelVersion.objects.select_related("base", "run").order_by("pk"):
            report = v.reports.order_by("-created_at").first()
            score = ""
            if report:
                mode = report.metrics["mode"]
                cand = report.metrics["models"].get("candidate", {}).get("line_completion", {}).get(mode, {})
                score = f"exact match {cand.get('exact_match', 0):.3f} ({mode})"
            self.stdout.write(f"v{v.pk:<4} {v.status:<10} base={v.base.slug:<24} run={v.run_id:<4} {score}")
