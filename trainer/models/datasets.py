from django.db import models

from appliance.fields import InstancePathField, glob_lines
from appliance.status import WorkedRow


class Dataset(WorkedRow):
    """Training and held-out files read from repositories at recorded commit SHAs."""

    class Status(models.TextChoices):
        PENDING = "pending"
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"

    TRANSITIONS = {
        Status.PENDING: {Status.BUILDING, Status.FAILED},
        Status.BUILDING: {Status.READY, Status.FAILED},
        Status.FAILED: {Status.PENDING},  # retried
    }
    WORKING = frozenset({Status.BUILDING})

    repositories = models.ManyToManyField("trainer.Repository", related_name="datasets")
    path = InstancePathField()
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


class DatasetFile(models.Model):
    """One file a dataset read, kept or dropped, with the reason: the searchable list behind the report."""

    class Split(models.TextChoices):
        TRAIN = "train"
        HELDOUT = "heldout"
        DROPPED = "dropped"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="files")
    repo = models.CharField(max_length=100)
    path = models.CharField(max_length=2000)
    language = models.CharField(max_length=40, blank=True)
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes in the repository.")
    split = models.CharField(max_length=8, choices=Split.choices)
    reason = models.CharField(max_length=40, blank=True, help_text="Why the file was left out.")
    detail = models.CharField(max_length=300, blank=True, help_text="The numbers behind the reason.")
    secrets = models.PositiveIntegerField(default=0, help_text="Secrets and PII scrubbed from the file.")

    class Meta:
        ordering = ["dataset", "repo", "path"]
        indexes = [models.Index(fields=["dataset", "split", "reason"])]

    def __str__(self) -> str:
        return f"{self.repo}:{self.path}"


class DatasetPolicy(models.Model):
    """The admin's exclusion patterns for every dataset (one row, pk=1, edited on the Policies page).

    No row, or a null value, means the appliance default HEARTH_DATASET_EXCLUDE; an empty text means
    no global exclusion at all."""

    exclude_globs = models.TextField(
        null=True,
        blank=True,
        help_text="One pattern a line (gitignore syntax), left out of every dataset on top of each "
        "repository's own patterns.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "dataset policy"

    def __str__(self) -> str:
        return "Dataset policy"

    @property
    def globs(self) -> list[str]:
        return glob_lines(self.exclude_globs)
