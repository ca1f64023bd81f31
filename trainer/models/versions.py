from django.db import models

from appliance.fields import InstancePathField
from appliance.status import WorkedRow


class ModelVersion(WorkedRow):
    """A fine-tuned model: base + dataset + run + adapter + GGUF files + evaluation."""

    class Status(models.TextChoices):
        BUILDING = "building"
        CANDIDATE = "candidate"
        PROMOTED = "promoted"
        RETIRED = "retired"
        FAILED = "failed"

    TRANSITIONS = {
        Status.BUILDING: {Status.CANDIDATE, Status.FAILED},
        Status.CANDIDATE: {Status.PROMOTED, Status.RETIRED, Status.FAILED},
        Status.PROMOTED: {Status.RETIRED},
        Status.RETIRED: {Status.PROMOTED},
        Status.FAILED: {Status.BUILDING},  # retried
    }
    WORKING = frozenset({Status.BUILDING})

    base = models.ForeignKey("trainer.BaseModel", on_delete=models.PROTECT, related_name="versions")
    run = models.OneToOneField("trainer.TrainingRun", on_delete=models.PROTECT, related_name="version")
    path = InstancePathField()
    gguf_path = InstancePathField()
    gguf_sha256 = models.CharField(max_length=64, blank=True)
    fim_format = models.CharField(max_length=32, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING)
    served_arm = models.CharField(
        max_length=32,
        blank=True,
        help_text="The evaluated arm this version serves as: 'tuned', or 'tuned+context' (prompts carry "
        "snippets of the rest of its repositories from the dataset's code index).",
    )

    gate_passed = models.BooleanField(
        null=True,
        blank=True,
        help_text="The promotion gate's verdict on its evaluation: a paired, significant win (empty: not gated).",
    )
    override_reason = models.TextField(
        blank=True,
        help_text="Why an admin served it although the gate did not promote it (empty: the gate's choice).",
    )

    # A canary: a candidate served to a share of developers (chosen per user, so each keeps one model)
    # beside the served model, until an admin promotes it to everyone or rolls it back.
    canary_percent = models.PositiveSmallIntegerField(
        default=0, help_text="Share of developers (1–99 %) served this candidate as a canary; 0: no canary."
    )
    canary_started_at = models.DateTimeField(null=True, blank=True)
    canary_verdict = models.CharField(
        max_length=16,
        blank=True,
        help_text="The live comparison's answer once it became significant: better or worse (notified once).",
    )

    def __str__(self) -> str:
        return f"v{self.pk} ({self.base.slug})"

    @property
    def is_canary(self) -> bool:
        return self.status == self.Status.CANDIDATE and self.canary_percent > 0

    @property
    def served_against_gate(self) -> bool:
        """Served now although its evaluation did not earn it: flagged until another promotion."""
        return self.status == self.Status.PROMOTED and bool(self.override_reason)

    @property
    def serves_context(self) -> bool:
        return self.served_arm.endswith("+context")
