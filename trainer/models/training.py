from django.db import models

from appliance.fields import InstancePathField
from appliance.status import WorkedRow


class TrainingRun(WorkedRow):
    """One fine-tune of a base model on a dataset; progress is a time series of ProgressPoint.

    A run whose worker died goes back to the queue (STUCK_TO) and resumes from its checkpoint, up
    to HEARTH_TRAINING_MAX_ATTEMPTS attempts (`trainer.watchdog`)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    TRANSITIONS = {
        Status.QUEUED: {Status.RUNNING, Status.CANCELLED, Status.FAILED},
        Status.RUNNING: {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.QUEUED},
    }
    WORKING = frozenset({Status.RUNNING})
    STUCK_TO = Status.QUEUED
    STUCK_ADVICE = "It goes back to the queue and resumes from its last checkpoint."

    base = models.ForeignKey("trainer.BaseModel", on_delete=models.PROTECT, related_name="runs")
    dataset = models.ForeignKey("trainer.Dataset", on_delete=models.PROTECT, related_name="runs")
    settings = models.JSONField(default=dict, blank=True)
    method = models.CharField(
        max_length=32, blank=True, help_text="qlora-nf4, lora-bf16 or lora-fp32, and why."
    )
    device = models.CharField(max_length=32, blank=True)
    path = InstancePathField()
    adapter_path = InstancePathField()
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    submission = models.CharField(
        max_length=64, blank=True, default="", editable=False, help_text="The start form's one-time key."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["submission"], condition=~models.Q(submission=""), name="run_submission_once"
            )
        ]

    def __str__(self) -> str:
        return f"run-{self.pk}"


class ProgressPoint(models.Model):
    """One sample of a run's progress, written every few seconds while it trains."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="progress")
    at = models.DateTimeField(auto_now_add=True)
    step = models.PositiveIntegerField()
    total_steps = models.PositiveIntegerField()
    loss = models.FloatField(null=True)
    eval_loss = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True)
    eta_s = models.FloatField(null=True, blank=True)
    peak_memory_mb = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["run", "step"]

    def describe(self) -> str:
        """One line for a terminal: step, losses, speed and ETA."""
        eta = f", ETA {self.eta_s / 60:.1f} min" if self.eta_s else ""
        ev = f", held-out loss {self.eval_loss:.3f}" if self.eval_loss is not None else ""
        loss = f" loss {self.loss:.3f}" if self.loss is not None else ""
        return f"step {self.step}/{self.total_steps}{loss}{ev}, {self.tokens_per_s or 0:.0f} tok/s{eta}"
