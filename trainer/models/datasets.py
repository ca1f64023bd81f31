from django.db import models

from appliance.status import StatusRow


class Dataset(StatusRow):
    """Training and held-out files read from repositories at recorded commit SHAs."""

    class Status(models.TextChoices):
        PENDING = "pending"
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"

    TRANSITIONS = {
        Status.PENDING: {Status.BUILDING},
        Status.BUILDING: {Status.READY, Status.FAILED},
    }

    repositories = models.ManyToManyField("trainer.Repository", related_name="datasets")
    path = models.CharField(max_length=1000, blank=True)
    commits = models.JSONField(default=dict, blank=True, help_text="Repository name → commit SHA read.")
    options = models.JSONField(default=dict, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    report = models.JSONField(default=dict, blank=True)
    train_files = models.PositiveIntegerField(default=0)
    heldout_files = models.PositiveIntegerField(default=0)
    train_bytes = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)

    def __str__(self) -> str:
        return f"dataset-{self.pk}"
