"""The Policies page: one form over every admin policy; each change applies to the behaviour that
reads it and is in the audit log; non-staff users never see it; bad input is refused clearly."""

from __future__ import annotations

import pytest

from tests.conftest import CODE_FILES, git_repo_make, stdlib_files

pytestmark = pytest.mark.django_db

URL = "/admin/inference/servingpolicy/policies/"


def _form(**changes) -> dict:
    data = {
        "telemetry_enabled": "",
        "telemetry_content": "",
        "flow_logs_enabled": "",
        "retention_days": "28",
        "exclusion_globs": "",
        "response_filters": ["email", "url", "ip", "credential", "insecure"],
        "repository_context": "on",
        "dataset_exclude_globs": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


def test_the_page_shows_every_policy_with_help_and_is_linked(admin_client):
    page = admin_client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    for text in (
        "Telemetry enabled",
        "Also store prompts, suggestions",  # the model's help text
        "Flow logs enabled",
        "Retention days",
        "Content exclusion (serving)",
        "Dataset exclusion",
        "Response filters",
        "Repository context",
        "snippets of the served model&#x27;s repositories",  # the model's help text
        "blocked-code corpus",
    ):
        assert text in html, text
    assert URL in admin_client.get("/admin/").content.decode()  # dashboard and header link
    assert admin_client.get("/admin/inference/servingpolicy/").url == URL


def test_saving_changes_the_policy_and_is_audited(admin_client):
    from appliance.models import AuditEntry
    from inference.policy import policy_get, serving_rules

    r = admin_client.post(
        URL,
        _form(
            telemetry_enabled="on",
            flow_logs_enabled="on",
            retention_days="7",
            exclusion_globs="**/secrets/**\n\n*.pem",
            response_filters=["email", "credential"],
        ),
        REMOTE_ADDR="10.1.2.3",
    )
    assert r.status_code == 302 and r.url == URL
    policy = policy_get()
    assert policy.telemetry_enabled and policy.flow_logs_enabled and not policy.telemetry_content
    assert policy.retention_days == 7 and policy.globs == ["**/secrets/**", "*.pem"]
    assert serving_rules().filters == frozenset({"email", "credential"})
    entry = AuditEntry.objects.get(action="policy.change")
    assert entry.actor == "admin" and entry.ip == "10.1.2.3"
    assert "telemetry_enabled: False → True" in entry.detail and "retention_days: 28 → 7" in entry.detail
    assert "response_filters: credential, email, insecure, ip, url → credential, email" in entry.detail
    # Saving again unchanged records nothing.
    admin_client.post(
        URL,
        _form(
            telemetry_enabled="on",
            flow_logs_enabled="on",
            retention_days="7",
            exclusion_globs="**/secrets/**\n*.pem",
            response_filters=["email", "credential"],
        ),
    )
    assert AuditEntry.objects.filter(action="policy.change").count() == 1


def test_repository_context_is_on_by_default_and_the_page_switches_it(admin_client):
    from appliance.models import AuditEntry
    from inference.policy import policy_get, serving_rules

    assert policy_get().repository_context
    assert 'id="id_repository_context" checked' in admin_client.get(URL).content.decode()
    admin_client.post(URL, _form(repository_context=""))
    assert not policy_get().repository_context and not serving_rules().policy.repository_context
    entry = AuditEntry.objects.get(action="policy.change")
    assert entry.detail == "repository_context: True → False"
    assert 'id="id_repository_context" checked' not in admin_client.get(URL).content.decode()
    admin_client.post(URL, _form())
    assert policy_get().repository_context


def test_dataset_exclusion_defaults_to_the_setting_and_the_page_overrides_it(
    admin_client, tmp_path, settings
):
    from appliance.models import AuditEntry
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models.datasets import DatasetFile

    settings.HEARTH_DATASET_EXCLUDE = ["legacy/"]
    assert "legacy/" in admin_client.get(URL).content.decode()  # the default, shown
    files: dict[str, str | bytes] = stdlib_files(CODE_FILES)
    files |= {"legacy/old.py": "def old(x):\n    return x\n", "vendor_secret/keys.py": "K = 1\n"}
    repo = repository_register(source=str(git_repo_make(tmp_path / "rep", files)))

    def dropped(dataset) -> set[str]:
        rows = DatasetFile.objects.filter(dataset=dataset, split="dropped", reason="excluded")
        return set(rows.values_list("path", flat=True))

    assert dropped(dataset_build(repositories=[repo])) == {"legacy/old.py"}
    r = admin_client.post(URL, _form(dataset_exclude_globs="vendor_secret/\n"))
    assert r.status_code == 302
    assert dropped(dataset_build(repositories=[repo])) == {"vendor_secret/keys.py"}
    entry = AuditEntry.objects.get(action="policy.change")
    assert "dataset_exclude_globs: 'legacy/' → 'vendor_secret/'" in entry.detail


def test_response_filter_switched_off_lets_an_email_through(admin_client, client, monkeypatch, settings):
    from inference.api import serving
    from inference.auth import token_create
    from inference.engine.result import EngineChoice, EngineResult

    settings.HEARTH_DEFERRED_WRITES = False
    raw = token_create(username="dev")[1]
    suggestion = "    notify('ops@example.com')\n"

    def fake_complete(params, timeout=120.0):
        choice = EngineChoice(0, suggestion, "stop", prompt_tokens=1, completion_tokens=5)
        return EngineResult(choices=(choice,), model="m")

    monkeypatch.setattr(serving, "engine_complete", fake_complete)

    def complete() -> str:
        r = client.post(
            "/v1/completions",
            {"prompt": "def f():\n"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
        return r.json()["choices"][0]["text"]

    admin_client.get(URL)  # the policy row exists with every filter on
    assert complete() == ""  # cut before the email
    admin_client.post(URL, _form(response_filters=["url", "ip", "credential", "insecure"]))
    assert complete() == suggestion


def test_blocked_code_upload_is_added_audited_and_validated(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from appliance.models import AuditEntry
    from inference.models import BlockedCode
    from inference.policy import serving_rules

    code = "".join(f"def licensed_{i}(a, b):\n    return a ** {i} + b\n" for i in range(12))
    upload = SimpleUploadedFile("licensed.py", code.encode())
    assert admin_client.post(URL, {**_form(), "blocked_code": upload}).status_code == 302
    assert BlockedCode.objects.get().text == code and serving_rules().index.matches(code)
    assert "licensed.py" in AuditEntry.objects.get(action="blocked_code.add").detail

    short = SimpleUploadedFile("short.py", b"x = 1\n")
    page = admin_client.post(URL, {**_form(), "blocked_code": short}).content.decode()
    assert "fewer than 150 characters" in page and BlockedCode.objects.count() == 1
    binary = SimpleUploadedFile("blob.bin", b"\xff\xfe\x00" * 100)
    assert "not UTF-8 text" in admin_client.post(URL, {**_form(), "blocked_code": binary}).content.decode()


def test_invalid_input_shows_a_clear_error_and_saves_nothing(admin_client):
    from appliance.models import AuditEntry
    from inference.policy import policy_get

    cases = [
        (_form(retention_days="0"), "greater than or equal to 1"),
        (_form(retention_days="many"), "Enter a whole number"),
        (_form(telemetry_content="on"), "Content collection needs telemetry"),
        (_form(dataset_exclude_globs="ok/\n!"), "Line 2, &#x27;!&#x27;, is not a valid gitignore pattern"),
        (_form(response_filters=["email", "nonsense"]), "Select a valid choice"),
    ]
    for data, message in cases:
        r = admin_client.post(URL, data)
        assert r.status_code == 200, data
        html = r.content.decode()
        assert message in html and "nothing was saved" in html, message
    assert (
        policy_get().retention_days == 28 and not AuditEntry.objects.filter(action="policy.change").exists()
    )


def test_non_staff_users_get_no_access(client, django_user_model):
    from inference.policy import policy_get

    user = django_user_model.objects.create_user("dev", password="a-long-password-1")
    client.force_login(user)
    assert client.get(URL).status_code == 302  # to the admin login
    r = client.post(URL, _form(telemetry_enabled="on"))
    assert r.status_code == 302 and "/admin/login/" in r.url
    assert not policy_get().telemetry_enabled

    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("viewer", password="a-long-password-2", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403  # staff alone is a sign-in, not a permission
    staff.user_permissions.add(Permission.objects.get(codename="view_servingpolicy"))
    client.force_login(staff)
    assert client.get(URL).status_code == 200  # may read, with a note
    assert client.post(URL, _form(telemetry_enabled="on")).status_code == 403
    assert not policy_get().telemetry_enabled
