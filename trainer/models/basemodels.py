from django.db import models

from appliance.fields import InstancePathField
from appliance.status import WorkedRow


class BaseModel(WorkedRow):
    """A pretrained model Hearth fine-tunes and can serve as-is.

    `hf_path` is a folder transformers loads (optionally through `train_gguf_file` inside it);
    `gguf_path` is what llama.cpp serves before any fine-tune.
    """

    class Status(models.TextChoices):
        IMPORTING = "importing"
        READY = "ready"
        FAILED = "failed"

    TRANSITIONS = {Status.IMPORTING: {Status.READY, Status.FAILED}, Status.FAILED: {Status.IMPORTING}}
    WORKING = frozenset({Status.IMPORTING})

    slug = models.SlugField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200)
    hf_path = InstancePathField(help_text="Folder that transformers loads.")
    train_gguf_file = models.CharField(
        max_length=255,
        blank=True,
        help_text="GGUF file inside hf_path that transformers dequantizes for training.",
    )
    gguf_path = InstancePathField(help_text="GGUF served by llama.cpp.")
    architecture = models.CharField(max_length=100, blank=True)
    fim_format = models.CharField(
        max_length=32, blank=True, help_text="FIM format name; empty if it cannot infill."
    )
    can_infill = models.BooleanField(default=False)
    license = models.CharField(max_length=100, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IMPORTING)

    def __str__(self) -> str:
        return self.slug
