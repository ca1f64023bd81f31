from django.core.exceptions import ValidationError
from django.db import models

from appliance.fields import InstancePathField
from appliance.status import WorkedRow


class Repository(WorkedRow):
    """A git repository Hearth keeps as its own bare mirror under the instance dir."""

    class Status(models.TextChoices):
        NEW = "new"
        SYNCING = "syncing"
        READY = "ready"
        FAILED = "failed"

    TRANSITIONS = {
        Status.NEW: {Status.SYNCING},
        Status.SYNCING: {Status.READY, Status.FAILED},
        Status.READY: {Status.SYNCING},
        Status.FAILED: {Status.SYNCING},
    }
    WORKING = frozenset({Status.SYNCING})

    name = models.SlugField(max_length=100, unique=True)
    source = models.CharField(
        max_length=1000,
        help_text="Local path or intranet URL it is mirrored from (never with a password in it).",
    )
    username = models.CharField(max_length=255, blank=True, help_text="User name for an https URL.")
    credential = models.TextField(
        blank=True,
        editable=False,
        help_text="Password, access token or SSH private key, encrypted at rest (Fernet).",
    )
    branch = models.CharField(
        max_length=255,
        blank=True,
        help_text="Branch to read. Empty: the repository's default branch, detected at every sync.",
    )
    exclude_globs = models.TextField(
        blank=True, help_text="Files to leave out of datasets, one pattern a line (gitignore syntax)."
    )
    languages = models.CharField(
        max_length=500,
        blank=True,
        help_text="Languages to train on, comma-separated (e.g. python, typescript). Empty: every recognised language.",
    )
    mirror_path = InstancePathField()
    default_branch = models.CharField(max_length=255, blank=True, help_text="Branch read at the last sync.")
    head_sha = models.CharField(max_length=64, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)

    class Meta:
        verbose_name_plural = "repositories"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from trainer.tools.languages import ALL_LANGUAGES

        unknown = sorted(set(self.language_choice) - set(ALL_LANGUAGES))
        if unknown:
            raise ValidationError(
                {"languages": f"Unknown languages: {', '.join(unknown)}. Known: {', '.join(ALL_LANGUAGES)}."}
            )

    @property
    def language_choice(self) -> tuple[str, ...]:
        return tuple(x.strip().lower() for x in self.languages.split(",") if x.strip())

    @property
    def exclude_patterns(self) -> tuple[str, ...]:
        lines = (line.strip() for line in self.exclude_globs.splitlines())
        return tuple(line for line in lines if line and not line.startswith("#"))
