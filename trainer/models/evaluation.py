from django.db import models

from appliance.status import WorkedRow


class EvaluationReport(WorkedRow):
    """One evaluation: several models scored on the same held-out tasks, in the same mode.

    The row exists (running, with its log) before any model is scored, so a failure is recorded on
    it; `metrics` is filled when it is done.
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    TRANSITIONS = {Status.RUNNING: {Status.DONE, Status.FAILED}}
    WORKING = frozenset({Status.RUNNING})

    dataset = models.ForeignKey("trainer.Dataset", on_delete=models.PROTECT, related_name="reports")
    version = models.ForeignKey(
        "trainer.ModelVersion", on_delete=models.CASCADE, null=True, blank=True, related_name="reports"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    mode = models.CharField(
        max_length=16, blank=True, help_text="fim or prefix: the mode the headline numbers used."
    )
    metrics = models.JSONField(default=dict, help_text="model label → metric → value, with the mode of each.")
    decision = models.TextField(blank=True, help_text="Promotion gate outcome and why.")

    def __str__(self) -> str:
        return f"report-{self.pk}"

    @property
    def scores(self):
        """The metrics as typed scores (`trainer.tools.scores.Scores`)."""
        from trainer.tools.scores import Scores

        return Scores.from_metrics(self.metrics)

    def headline(self, label: str, mode: str | None = None):
        """`label`'s line-completion score in the report's common mode (or `mode`)."""
        return self.scores.headline(label, mode)
