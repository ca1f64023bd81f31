"""The status-row guard: a compare-and-set UPDATE, so two processes can never both move a row."""

from __future__ import annotations

import pytest

from appliance.errors import InvalidTransition


@pytest.mark.django_db
def test_an_allowed_transition_moves_and_records_its_reason():
    from trainer.models import Dataset

    row = Dataset.objects.create()
    row.transition(Dataset.Status.BUILDING)
    row.transition(Dataset.Status.FAILED, reason="out of disk")
    row.refresh_from_db()
    assert (row.status, row.status_reason) == ("failed", "out of disk")


@pytest.mark.django_db
def test_a_disallowed_transition_raises_and_changes_nothing():
    from trainer.models import Dataset

    row = Dataset.objects.create()
    with pytest.raises(InvalidTransition, match="cannot go from 'pending' to 'ready'"):
        row.transition(Dataset.Status.READY)
    row.refresh_from_db()
    assert row.status == "pending"


@pytest.mark.django_db
def test_two_copies_racing_only_the_first_wins():
    from trainer.models import Dataset

    row = Dataset.objects.create()
    first, second = Dataset.objects.get(pk=row.pk), Dataset.objects.get(pk=row.pk)
    first.transition(Dataset.Status.BUILDING)
    with pytest.raises(InvalidTransition, match="changed underneath us"):
        second.transition(Dataset.Status.FAILED)
    row.refresh_from_db()
    assert row.status == "building" and second.status == "building"


@pytest.mark.django_db
def test_log_lines_append_without_overwriting_other_fields():
    from trainer.models import Dataset

    row = Dataset.objects.create()
    stale = Dataset.objects.get(pk=row.pk)
    row.transition(Dataset.Status.BUILDING)
    stale.log_line("read 3 files")
    stale.log_line("scrubbed 1 secret")
    row.refresh_from_db()
    assert row.status == "building"
    assert row.log.splitlines()[0].endswith("read 3 files") and row.log.splitlines()[1].endswith(
        "scrubbed 1 secret"
    )
