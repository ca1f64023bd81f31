"""The admin's job in the admin pages, through Django's test client: start a custom model with a
preview, watch its run page, decide on the version, create and revoke a token, read the audit log."""

from __future__ import annotations

import re

import pytest

from appliance.models import AuditEntry


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "", "pw-root-123456")
    client.force_login(user)
    return client


def _start_form(repo, base) -> dict:
    from webui.forms import settings_fields

    data = {"repositories": [repo.pk], "base": base.pk, "exclude_globs": "", "override_reason": ""}
    for name, field in settings_fields().items():
        if field.initial is not None and not isinstance(field.initial, bool):
            data[name] = field.initial
        elif field.initial:
            data[name] = "on"
    data.update(lora_max_steps=12, lora_seq_len=64, lora_eval_sequences=2)
    return data


@pytest.mark.django_db(transaction=True)
def test_start_watch_decide_and_tokens(admin_client, code_repo, micro_base):
    from inference.models import ApiToken
    from trainer.mirrors.services import repository_register
    from trainer.models import ModelVersion, TrainingRun

    repo = repository_register(source=str(code_repo))
    assert admin_client.get("/admin/trainer/trainingrun/add/").status_code == 403  # no broken add form
    page = admin_client.get("/admin/trainer/trainingrun/start/")
    assert page.status_code == 200 and b"learning rate" in page.content  # settings with their help texts
    preview = admin_client.post("/admin/trainer/trainingrun/start/", {**_start_form(repo, micro_base), "preview": "1"})
    assert preview.status_code == 200 and b"kept" in preview.content.lower()
    assert TrainingRun.objects.count() == 0  # a preview records nothing
    started = admin_client.post("/admin/trainer/trainingrun/start/", {**_start_form(repo, micro_base), "start": "1"})
    assert started.status_code == 302, started.content.decode()[:2000]
    run = TrainingRun.objects.get()  # tasks run in-process here: trained, exported, evaluated, gated
    _stage_manifests_chain(run)
    run_page = admin_client.get(f"/admin/trainer/trainingrun/{run.pk}/change/")
    assert run_page.status_code == 200 and b"<svg" in run_page.content and b"data-live-url" in run_page.content
    live = admin_client.get(f"/admin/trainer/trainingrun/{run.pk}/live/")
    assert live.status_code == 200 and f"Run {run.pk}".encode() in live.content
    version = ModelVersion.objects.get(run=run)
    version_page = admin_client.get(f"/admin/trainer/modelversion/{version.pk}/change/").content.decode()
    assert "McNemar" in version_page and "model-q8_0.gguf" in version_page
    download = admin_client.get(f"/admin/trainer/modelversion/{version.pk}/files/model-q8_0.gguf/")
    assert download.status_code == 200 and b"".join(download.streaming_content)[:4] == b"GGUF"
    if version.status == "candidate":
        confirm = admin_client.get(f"/admin/trainer/modelversion/{version.pk}/do/promote/")
        assert b"Promote" in confirm.content
        admin_client.post(f"/admin/trainer/modelversion/{version.pk}/do/promote/")
        version.refresh_from_db()
        assert version.status == "promoted"

    assert admin_client.get("/admin/inference/apitoken/add/").status_code == 403
    root = AuditEntry.objects.model._meta.apps.get_model("auth", "User").objects.get(username="root")
    made = admin_client.post("/admin/inference/apitoken/new/", {"user": root.pk, "name": "laptop",
                                                                "expires_at": "", "rate_limit_per_minute": "30"})
    raw = re.search(r'value="(hth_[^"]+)"', made.content.decode())
    assert made.status_code == 200 and raw, made.content.decode()[:3000]
    token = ApiToken.objects.get(name="laptop")
    assert token.digest == ApiToken.hash(raw.group(1)) and raw.group(1) not in str(token.__dict__)
    admin_client.post("/admin/inference/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None

    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"training.start", "token.create", "token.revoke"} <= actions
    assert admin_client.get("/admin/appliance/auditentry/").status_code == 200
    assert token.rate_limit_per_minute == 30


def _stage_manifests_chain(run) -> None:
    """Each stage's manifest names the one before it by sha256; paths are stored relative to the home."""
    import json
    from pathlib import Path

    from appliance.paths import sha256_file
    from trainer.models import EvaluationReport, TrainingRun

    dataset_manifest = Path(run.dataset.path) / "manifest.json"
    training = json.loads((Path(run.path) / "manifest.json").read_text())
    assert training["stage"] == "training" and training["inputs"]["dataset_manifest"] == sha256_file(dataset_manifest)
    assert training["adapter"] and "torch" in training["libraries"]
    report = EvaluationReport.objects.filter(version__run=run).first()
    assert report.status == "done" and report.log
    evaluation = json.loads((Path(run.path).parent.parent / "evaluations" / f"evaluation-{report.pk:05d}"
                             / "manifest.json").read_text())
    assert evaluation["inputs"]["dataset_manifest"] == sha256_file(dataset_manifest)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT path FROM {TrainingRun._meta.db_table} WHERE id = %s", [run.pk])
        stored = cursor.fetchone()[0]
    assert not stored.startswith("/") and run.path.endswith(stored)  # relative to HEARTH_HOME


@pytest.mark.django_db
def test_staff_see_only_their_own_tokens(client, django_user_model):
    from inference.auth import token_create

    staff = django_user_model.objects.create_user("dev", "", "pw-dev-1234567", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_apitoken", "change_apitoken"]))
    token_create(username="dev", name="mine")
    token_create(username="someone-else", name="theirs")
    client.force_login(staff)
    page = client.get("/admin/inference/apitoken/").content.decode()
    assert "mine" in page and "theirs" not in page


@pytest.mark.django_db(transaction=True)
def test_training_start_command_queues_follows_and_audits(code_repo, micro_base, settings):
    import io

    from django.core.management import CommandError, call_command

    from trainer.mirrors.services import repository_register
    from trainer.models import ModelVersion

    repo = repository_register(source=str(code_repo))
    with pytest.raises(CommandError, match="No ready base model"):
        call_command("training_start", repo.name, "--base", "nope")
    out = io.StringIO()
    call_command("training_start", repo.name, "--base", micro_base.slug, "--max-steps", "8", stdout=out,
                 stderr=io.StringIO())
    assert re.search(r"Training run \d+ queued", out.getvalue())
    assert re.search(r"Model version \d+: (candidate|promoted)", out.getvalue()), out.getvalue()
    assert ModelVersion.objects.count() == 1
    assert AuditEntry.objects.filter(action="training.start", actor="command line").exists()
    settings.HEARTH_RETRAIN_MIN_INTERVAL_H = 168
    with pytest.raises(CommandError, match="limited to once every"):
        call_command("training_start", repo.name, "--base", micro_base.slug, "--no-follow")
    call_command("training_start", repo.name, "--base", micro_base.slug, "--no-follow", "--max-steps", "4",
                 "--override-reason", "hotfix release", stdout=io.StringIO())
    assert "hotfix release" in AuditEntry.objects.filter(action="training.start").first().detail
