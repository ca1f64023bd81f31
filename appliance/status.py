"""Rows with a guarded status: every long stage is one of these (see DESIGN.md, "The pipeline")."""

from __future__ import annotations

from django.db import models
from django.db.models import Value
from django.db.models.functions import Concat
from django.utils import timezone

from appliance.errors import InvalidTransition


class StatusRow(models.Model):
    """A row whose `status` moves only along `TRANSITIONS`, with its own log lines.

    The guard is a conditional UPDATE (`WHERE status = <current>`), so two processes racing to
    move the same row cannot both win: the loser gets `InvalidTransition`.
    """

    TRANSITIONS: dict[str, set[str]] = {}

    status_reason = models.TextField(blank=True, default="", help_text="Why the row is in its status.")
    log = models.TextField(blank=True, default="", help_text="The stage's own log lines.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def can_transition(self, to: str) -> bool:
        return to in self.TRANSITIONS.get(self.status, set())

    def transition(self, to: str, *, reason: str = "") -> None:
        if not self.can_transition(to):
            raise InvalidTransition(
                f"{type(self).__name__} {self.pk} cannot go from '{self.status}' to '{to}'."
            )
        moved = (
            type(self)
            .objects.filter(pk=self.pk, status=self.status)
            .update(status=to, status_reason=reason, updated_at=timezone.now())
        )
        if not moved:
            self.refresh_from_db(fields=["status"])
            raise InvalidTransition(
                f"{type(self).__name__} {self.pk} changed underneath us (now '{self.status}'); not moving to '{to}'."
            )
        self.status = to
        self.status_reason = reason

    def log_line(self, message: str) -> None:
        """Append one timestamped line to the row's log without rewriting other fields."""
        line = f"{timezone.now():%Y-%m-%d %H:%M:%S} {message}\n"
        type(self).objects.filter(pk=self.pk).update(log=Concat("log", Value(line)))
        self.log += line
