from django.db import models


class EvaluationReport(models.Model):
    """Scores of several models on the same held-out tasks, in the same scoring mode."""

    dataset = models.ForeignKey("trainer.Dataset", on_delete=models.PROTECT, related_name="reports")
    version = models.ForeignKey(
        "trainer.ModelVersion", on_delete=models.CASCADE, null=True, blank=True, related_name="reports"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    mode = models.CharField(max_length=16, help_text="fim or prefix: the mode the headline numbers used.")
    metrics = models.JSONField(default=dict, help_text="model label → metric → value, with the mode of each.")
    decision = models.TextField(blank=True, help_text="Promotion gate outcome and why.")

    def __str__(self) -> str:
        return f"report-{self.pk}"
