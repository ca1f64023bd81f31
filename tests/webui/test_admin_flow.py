"""The admin's pages over their services, in-process (jobs run synchronously): start a custom model
after a preview, watch it, tokens shown once, version actions confirmed, all in the audit log."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

SMALL = {
    "lora_max_steps": 6,
    "lora_seq_len": 64,
    "lora_grad_accum": 1,
    "lora_eval_sequences": 2,
    "lora_warmup_steps": 1,
}


def _form(client, url: str) -> dict:
    """The start form's defaults as a browser would post them (generated from LoraSettings)."""
    from dataclasses import fields

    from trainer.training.config import LoraSettings

    data = {f"lora_{f.name}": f.default for f in fields(LoraSettings) if not isinstance(f.default, bool)}
    data.update({f"lora_{f.name}": "on" for f in fields(LoraSettings) if f.default is True})
    return data


@pytest.fixture
def ready_repo(code_repo):
    from trainer.mirrors.services import repository_register

    return repository_register(source=str(code_repo))


@pytest.mark.slow  # trains, exports and evaluates the micro model in-process: minutes on 2 cores
def test_preview_then_start_records_and_limits(
    admin_client, ready_repo, micro_base, settings, django_capture_on_commit_callbacks
):
    from appliance.models import AuditEntry
    from trainer.models import TrainingRun

    settings.HEARTH_SHOW_TEST_BASES = True  # the micro base is a test base
    url = "/admin/trainer/trainingrun/start/"
    page = admin_client.get(url).content.decode()
    assert (
        "Advanced settings" in page and "LoRA rank r of every adapted projection." in page
    )  # help from the dataclass
    data = {
        **_form(admin_client, url),
        **SMALL,
        "repositories": [ready_repo.pk],
        "base": micro_base.pk,
        "exclude_globs": "src/textwrap.py",
    }
    preview = admin_client.post(url, {**data, "preview": "1"}).content.decode()
    assert "Dataset preview" in preview and "excluded" in preview and TrainingRun.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):  # the queued job runs in-process (SYNC)
        response = admin_client.post(url, {**data, "start": "1"})
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/trainingrun/{run.pk}/change/")
    assert run.settings["max_steps"] == 6 and run.status == TrainingRun.Status.SUCCEEDED  # sync jobs in tests
    live = admin_client.get(f"/admin/trainer/trainingrun/{run.pk}/live/").content.decode()
    assert "<polyline" in live and 'aria-valuenow="100"' in live
    change = admin_client.get(f"/admin/trainer/trainingrun/{run.pk}/change/").content.decode()
    assert 'name="cancel_requested"' not in change and 'name="base"' not in change
    assert admin_client.get("/admin/trainer/trainingrun/add/").status_code == 403

    settings.HEARTH_RETRAIN_MIN_INTERVAL_H = 168
    refused = admin_client.post(url, {**data, "start": "1"}).content.decode()
    assert "limited to once every 168 h" in refused and TrainingRun.objects.count() == 1
    admin_client.post(url, {**data, "start": "1", "override_reason": "security fix in the code"})
    assert TrainingRun.objects.count() == 2
    entry = AuditEntry.objects.filter(action="training.start").first()
    assert "rate limit overridden: security fix in the code" in entry.detail and entry.actor == "admin"
    assert entry.ip == "127.0.0.1"


def test_token_created_once_scoped_and_revoked(admin_client, client, django_user_model):
    from django.contrib.auth.models import Permission

    from appliance.models import AuditEntry
    from inference.auth import AuthError, token_authenticate
    from inference.models import ApiToken

    assert admin_client.get("/admin/inference/apitoken/add/").status_code == 403
    admin = django_user_model.objects.get(username="admin")
    page = admin_client.post(
        "/admin/inference/apitoken/new/", {"user": admin.pk, "name": "laptop", "rate_limit_per_minute": 7}
    ).content.decode()
    token = ApiToken.objects.get()
    raw = page.split('id="raw-token" class="hearth-token" readonly value="')[1].split('"')[0]
    assert token_authenticate(f"Bearer {raw}").pk == token.pk and token.rate_limit_per_minute == 7
    staff = django_user_model.objects.create_user("sam", password="pw-sam-123", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_apitoken"))
    client.force_login(staff)
    page = client.get("/admin/inference/apitoken/")
    assert page.status_code == 200 and "laptop" not in page.content.decode()  # not sam's
    admin_client.post("/admin/inference/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    with pytest.raises(AuthError):
        token_authenticate(f"Bearer {raw}")
    assert {"token.create", "token.revoke"} <= set(AuditEntry.objects.values_list("action", flat=True))


def test_login_failure_is_audited_and_the_log_cannot_be_edited(admin_client, client):
    from appliance.models import AuditEntry

    client.post("/admin/login/", {"username": "mallory", "password": "guess"})
    entry = AuditEntry.objects.get(action="login.failed")
    assert entry.target == "mallory" and entry.ip == "127.0.0.1" and "guess" not in entry.detail
    assert admin_client.get("/admin/appliance/auditentry/").status_code == 200
    assert admin_client.get("/admin/appliance/auditentry/add/").status_code == 403
    assert (
        'name="action"'
        not in admin_client.get(f"/admin/appliance/auditentry/{entry.pk}/change/").content.decode()
    )
