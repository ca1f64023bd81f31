"""Model versions: promote, roll back, retire, delete (falls back to the base), rate-limited
retraining, and notifications."""

from __future__ import annotations

import pytest

from appliance.errors import HearthError, TrainingError


@pytest.fixture
def versions(micro_base, tmp_path):
    from trainer.models import Dataset, ModelVersion, TrainingRun

    dataset = Dataset.objects.create(status="ready", path=str(tmp_path))
    rows = []
    for i in range(3):
        run = TrainingRun.objects.create(base=micro_base, dataset=dataset, status="succeeded")
        gguf = tmp_path / f"v{i}.gguf"
        gguf.write_bytes(b"GGUF")
        folder = tmp_path / f"version-{i}"
        folder.mkdir()
        rows.append(
            ModelVersion.objects.create(
                base=micro_base,
                run=run,
                status="candidate",
                gguf_path=str(gguf),
                path=str(folder),
                fim_format="hearth",
                gate_passed=True,
            )
        )
    return rows


@pytest.mark.django_db
def test_promote_roll_back_retire_delete(versions, micro_base):
    from inference.engine.selection import served_model_select
    from trainer.versions import model_version_delete, model_version_promote, model_version_retire

    v1, v2, v3 = versions
    model_version_promote(version=v1)
    assert served_model_select().version_pk == v1.pk
    model_version_promote(version=v2)
    v1.refresh_from_db()
    assert v1.status == "retired" and served_model_select().version_pk == v2.pk
    model_version_promote(version=v1)  # roll back to an earlier version
    v2.refresh_from_db()
    assert v2.status == "retired" and served_model_select().version_pk == v1.pk
    model_version_retire(version=v1)
    assert served_model_select().version_pk is None  # the base serves
    model_version_promote(version=v3)
    folder = v3.path
    model_version_delete(version=v3)
    served = served_model_select()
    assert served.version_pk is None and served.base_slug == micro_base.slug
    import os

    assert not os.path.exists(folder)


@pytest.mark.django_db
def test_serving_a_version_the_gate_kept_needs_a_reason_and_stays_flagged(versions):
    from appliance.models import AuditEntry, Notification
    from trainer.models import ModelVersion
    from trainer.versions import PromotionNeedsReason, model_version_promote

    loser, winner, _ = versions
    ModelVersion.objects.filter(pk=loser.pk).update(gate_passed=False)
    loser.refresh_from_db()
    with pytest.raises(PromotionNeedsReason, match="did not beat the model served now"):
        model_version_promote(version=loser, reason="   ")
    loser.refresh_from_db()
    assert loser.status == "candidate" and not AuditEntry.objects.exists()

    model_version_promote(version=loser, reason="the team lead asked for it", actor="ana", ip="10.0.0.7")
    loser.refresh_from_db()
    assert loser.served_against_gate and loser.override_reason == "the team lead asked for it"
    entry = AuditEntry.objects.get(action="version.promote_override")
    assert entry.actor == "ana" and "the team lead asked for it" in entry.detail
    assert Notification.objects.filter(title__contains=f"Version {loser.pk} is served although").exists()

    model_version_promote(version=winner)  # another promotion ends the flag
    loser.refresh_from_db()
    assert not loser.served_against_gate and not winner.served_against_gate


@pytest.mark.django_db
def test_a_version_without_its_gguf_cannot_be_promoted(versions):
    import os

    from trainer.versions import model_version_promote

    os.unlink(versions[0].gguf_path)
    with pytest.raises(HearthError, match="no GGUF file"):
        model_version_promote(version=versions[0])


@pytest.mark.django_db
def test_retraining_is_rate_limited_unless_forced(micro_base, tmp_path, settings, monkeypatch):
    from trainer.models import Dataset, TrainingRun
    from trainer.training import services
    from trainer.training.config import LoraSettings

    monkeypatch.setattr(services, "job_enqueue", lambda *a, **k: None)
    settings.HEARTH_RETRAIN_MIN_INTERVAL_H = 168
    dataset = Dataset.objects.create(status="ready", path=str(tmp_path))
    services.training_run_start(dataset=dataset, base=micro_base, settings=LoraSettings())
    with pytest.raises(TrainingError, match="once every 168 h"):
        services.training_run_start(dataset=dataset, base=micro_base, settings=LoraSettings())
    services.training_run_start(dataset=dataset, base=micro_base, settings=LoraSettings(), force=True)
    assert TrainingRun.objects.count() == 2


@pytest.mark.django_db
def test_notifications_are_stored_and_emailed(settings, mailoutbox):
    from appliance.models import Notification
    from appliance.notifications import notify

    settings.HEARTH_NOTIFY_EMAILS = ["admin@example.invalid"]
    notify(title="Training run 3 failed", body="out of memory", level="error")
    note = Notification.objects.get()
    assert note.emailed and note.level == "error"
    assert mailoutbox[0].subject == "[Hearth] Training run 3 failed" and "out of memory" in mailoutbox[0].body


@pytest.mark.django_db
def test_cancel_command(micro_base, tmp_path, monkeypatch):
    from django.core.management import CommandError, call_command

    from trainer.models import Dataset, TrainingRun
    from trainer.training import services

    monkeypatch.setattr(services, "job_enqueue", lambda *a, **k: None)
    dataset = Dataset.objects.create(status="ready", path=str(tmp_path))
    run = TrainingRun.objects.create(base=micro_base, dataset=dataset)
    call_command("training_cancel", str(run.pk))
    run.refresh_from_db()
    assert run.status == "cancelled"
    with pytest.raises(CommandError, match="only queued or running"):
        call_command("training_cancel", str(run.pk))
