"""An admin who did not write Hearth gets through its admin without a wrong turn: the rows a service
makes (base models, datasets, training runs, model versions, evaluation reports) have pages that show
them, not forms that save, and no add form; structured data reads as tables, not JSON; the navigation
follows the admin's job, without the job queue's internals; "View site" opens the dashboard; titles
and counts are in Hearth's words."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils.html import escape

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password-for-tests"
COMMIT = "4f2a9c81be03d57e6a1f0c29b8d4e7a6c3b5f901"
DIGEST = "9" * 64


@pytest.fixture
def rows(tmp_path):
    """One row of each kind a service makes, with the structured data it carries in real life."""
    from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion, TrainingRun

    base = BaseModel.objects.create(
        slug="tiny",
        display_name="Tiny",
        status="ready",
        manifest={"source": "/models/tiny", "files": {"model.safetensors": DIGEST}, "fim_format": "qwen"},
    )
    dataset = Dataset.objects.create(
        status="ready",
        commits={"payments": COMMIT},
        options={"max_file_bytes": 1_000_000, "languages": ["python", "go"], "exclude_globs": []},
        manifest={"stage": "dataset", "counts": {"train_files": 1200, "tokens": {"train": 43633}}},
        report={"seen_files": 1300},
    )
    run = TrainingRun.objects.create(
        base=base,
        dataset=dataset,
        status="succeeded",
        settings={"rank": 16, "learning_rate": 0.0002, "preset": "standard"},
        summary={"steps": 400, "tokens_per_s": 5123.4},
    )
    version = ModelVersion.objects.create(
        base=base,
        run=run,
        status="candidate",
        gate_passed=True,
        manifest={"stage": "export", "gguf": {"model-q8_0.gguf": DIGEST}, "timings": {"convert_s": 5.6}},
    )
    report = EvaluationReport.objects.create(
        dataset=dataset,
        version=version,
        status="done",
        mode="prefix",
        metrics={"mode": "prefix", "tasks": 300, "models": {"base": {"perplexity": {"perplexity": 10.31}}}},
        decision="Promoted: better.",
    )
    return {
        "basemodel": base,
        "dataset": dataset,
        "trainingrun": run,
        "modelversion": version,
        "evaluationreport": report,
    }


MODELS = ["basemodel", "dataset", "trainingrun", "modelversion", "evaluationreport"]
# The structured fields each page shows (values from the fixture), which must read as tables.
SHOWN = {
    "basemodel": ["model.safetensors", "fim_format"],
    "dataset": ["payments", "max_file_bytes", "train_files"],
    "trainingrun": ["16"],
    "modelversion": ["model-q8_0.gguf", "convert_s"],
    "evaluationreport": ["perplexity", "10.31"],
}


# The JSON fields of each model.
STRUCTURED = {
    "basemodel": ["manifest"],
    "dataset": ["commits", "options", "manifest", "report"],
    "trainingrun": ["settings", "summary"],
    "modelversion": ["manifest"],
    "evaluationreport": ["metrics"],
}


def _staff(django_user_model, name: str, perms: list[str]):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(name, password=PASSWORD, is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm))
    return django_user_model.objects.get(pk=user.pk)


@pytest.mark.parametrize("model", MODELS)
def test_a_row_made_by_a_service_has_a_page_that_shows_it(admin_client, rows, model):
    row = rows[model]
    html = admin_client.get(reverse(f"admin:trainer_{model}_change", args=[row.pk])).content.decode()
    # No button that saves, adds or deletes; a base model keeps one Save for its name and licence.
    assert 'name="_continue"' not in html and 'name="_addanother"' not in html
    assert ('name="_save"' in html) == (model == "basemodel")
    assert not re.search(r'href="[^"]*/\d+/delete/"', html), "a Delete button"
    assert ("historylink" in html) == (model == "basemodel")  # an empty history is no place to go
    # Structured data as tables (a digest shortened, the whole value on hover), never raw JSON.
    for field in STRUCTURED[model]:
        raw = json.dumps(getattr(row, field), ensure_ascii=False)[:12]
        assert raw not in html and escape(raw) not in html, f"{field} as raw JSON"
    assert "<table" in html
    for text in SHOWN[model]:
        assert text in html, text
    if model in {"basemodel", "modelversion"}:
        assert f'title="{DIGEST}"' in html and f">{DIGEST}<" not in html
    if model == "dataset":
        assert f'title="{COMMIT}"' in html and f">{COMMIT[:10]}<" in html


def test_no_add_form_for_a_row_a_service_makes(admin_client, rows):
    """A dataset added by hand stayed pending for ever; the other four were refused already."""
    from django.apps import apps

    for model in MODELS:
        url = reverse(f"admin:trainer_{model}_add")
        before = apps.get_model("trainer", model).objects.count()
        assert admin_client.get(url).status_code == 403, model
        assert admin_client.post(url, {"status": "pending"}).status_code == 403, model
        assert apps.get_model("trainer", model).objects.count() == before, model
        listing = admin_client.get(reverse(f"admin:trainer_{model}_changelist")).content.decode()
        assert url not in listing, model  # no "Add" button on the list
        assert url not in admin_client.get("/admin/").content.decode(), model  # nor in the navigation


def test_the_dataset_page_is_read_only_for_a_user_who_may_change_datasets(rows, client, django_user_model):
    """Read-only for everyone: the change permission is for the list's actions (Retry), not a form."""
    changer = _staff(django_user_model, "changer", ["view_dataset", "change_dataset"])
    client.force_login(changer)
    dataset = rows["dataset"]
    html = client.get(reverse("admin:trainer_dataset_change", args=[dataset.pk])).content.decode()
    assert 'name="_save"' not in html and "payments" in html
    response = client.post(reverse("admin:trainer_dataset_change", args=[dataset.pk]), {"status": "failed"})
    assert response.status_code == 403
    dataset.refresh_from_db()
    assert dataset.status == "ready"


# ---------------------------------------------------------------- navigation


SECTIONS = ["Code", "Training", "Models", "Serving", "Usage", "Audit", "Users"]


def test_the_navigation_follows_the_admins_job(admin_client, rf, django_user_model):
    request = rf.get("/admin/")
    request.user = django_user_model.objects.get(username="admin")
    apps = admin.site.get_app_list(request)
    assert [app["name"] for app in apps] == SECTIONS
    names = {app["name"]: [m["name"] for m in app["models"]] for app in apps}
    assert names["Code"] == ["Repositories"]
    assert names["Training"][:2] == ["Training runs", "Datasets"]
    assert names["Models"] == ["Model versions", "Evaluation reports", "Base models"]
    assert names["Serving"] == ["API tokens", "Policies", "Blocked code"]
    assert names["Usage"] == [
        "Completion records",
        "Completion events",
        "Code snapshots",
        "Filter counts",
        "Flow logs",
    ]
    assert names["Audit"] == ["Audit log", "Notifications"]
    assert names["Users"] == ["Users", "Groups", "Directory accounts"]

    index = admin_client.get("/admin/").content.decode()
    positions = [index.index(f'<span class="section">{name}</span>') for name in SECTIONS]
    assert positions == sorted(positions)


def test_the_job_queues_pages_are_out_of_the_navigation_but_reachable(admin_client):
    from django_q.models import Schedule

    for url in ("/admin/", "/admin/trainer/repository/"):
        html = admin_client.get(url).content.decode()
        assert "/admin/django_q/" not in html, url
        assert "Scheduled tasks" not in html and "Failed tasks" not in html
    schedule = Schedule.objects.create(name="probe", func="math.floor", args="1")
    assert admin_client.get("/admin/django_q/schedule/").status_code == 200
    assert admin_client.get(f"/admin/django_q/schedule/{schedule.pk}/change/").status_code == 200


def test_view_site_opens_the_dashboard(admin_client):
    html = admin_client.get("/admin/trainer/repository/").content.decode()
    target = re.search(r'<a href="([^"]+)">View site</a>', html).group(1)
    assert target == reverse("admin:index")
    assert admin_client.get(target).status_code == 200


def test_a_policy_row_is_not_added_from_the_navigation(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert reverse("admin:inference_servingpolicy_add") not in html


# ---------------------------------------------------------------- titles and counts


def _h1(html: str) -> str:
    return re.search(r"<h1>(.*?)</h1>", html, re.DOTALL).group(1).strip()


def test_titles_are_in_hearths_words(admin_client, rows):
    from appliance.audit import audit_record

    audit_record(action="token.create", actor="admin", target="token hth_x")
    for model in list(admin.site._registry):
        opts = model._meta
        html = admin_client.get(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        ).content.decode()
        if "<h1>" not in html:
            continue  # a page of its own (the policy list opens the Policies page)
        title = re.search(r"<title>(.*?)</title>", html, re.DOTALL).group(1)
        assert "Select" not in title and " to change" not in title and " to view" not in title, title
        assert "Select" not in _h1(html), opts.label
        row = model.objects.first()
        if row is not None:
            page = admin_client.get(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk])
            )
            heading = _h1(page.content.decode())
            assert not heading.startswith(("Change ", "View ")), heading

    assert _h1(admin_client.get("/admin/trainer/repository/").content.decode()) == "Repositories"
    assert _h1(admin_client.get("/admin/appliance/auditentry/").content.decode()) == "Audit log"
    dataset = rows["dataset"]
    page = admin_client.get(f"/admin/trainer/dataset/{dataset.pk}/change/").content.decode()
    assert _h1(page) == f"Dataset {dataset.pk}"
    run = rows["trainingrun"]
    assert _h1(admin_client.get(f"/admin/trainer/trainingrun/{run.pk}/change/").content.decode()) == (
        f"Training run {run.pk}"
    )


def test_counts_name_their_rows_in_the_right_plural(admin_client, django_user_model):
    from appliance.audit import audit_record
    from appliance.models import AuditEntry
    from inference.auth import token_create
    from inference.models import ApiToken

    for n in range(4):
        audit_record(action="token.create", actor="admin", target=f"token {n}")
    token_create(username="admin", name="laptop")
    assert "4 audit entries" in admin_client.get("/admin/appliance/auditentry/").content.decode()
    assert "1 API token" in admin_client.get("/admin/inference/apitoken/").content.decode()
    assert (AuditEntry._meta.verbose_name, AuditEntry._meta.verbose_name_plural) == (
        "audit entry",
        "audit entries",
    )
    assert ApiToken._meta.verbose_name_plural == "API tokens"


# ---------------------------------------------------------------- lists at 1366 px


def test_lists_show_short_commits_whole_addresses_and_separated_counts(admin_client):
    from appliance.audit import audit_record
    from trainer.models import Dataset, Repository

    Repository.objects.create(name="payments", source="/srv/payments.git", status="ready", head_sha=COMMIT)
    html = admin_client.get("/admin/trainer/repository/").content.decode()
    assert f'title="{COMMIT}">{COMMIT[:10]}<' in html and f">{COMMIT}<" not in html

    address = "2001:db8:85a3::8a2e:370:7334"
    audit_record(action="token.create", actor="admin", target="token hth_x", ip=address)
    html = admin_client.get("/admin/appliance/auditentry/").content.decode()
    assert f'<span class="hearth-ip">{address}</span>' in html

    Dataset.objects.create(status="ready", train_files=12345, train_bytes=9876543)
    html = admin_client.get("/admin/trainer/dataset/").content.decode()
    assert "12,345" in html and "9,876,543" in html


# ---------------------------------------------------------------- small things


def test_the_revoke_message_names_the_wait_the_web_processes_really_have(admin_client, settings):
    from inference.auth import AUTH_CACHE_MAX_S, token_create

    settings.HEARTH_AUTH_CACHE_S = AUTH_CACHE_MAX_S * 10  # capped: tokens are trusted no longer than that
    token, _ = token_create(username="admin", name="laptop")
    response = admin_client.post(
        "/admin/inference/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    messages = " ".join(str(m) for m in response.context["messages"])
    assert f"within {AUTH_CACHE_MAX_S:g} s" in messages


def test_directory_accounts_are_listed_and_never_edited(admin_client, django_user_model):
    from appliance.models import DirectoryAccount

    user = django_user_model.objects.create_user("jdoe", is_staff=True)
    account = DirectoryAccount.objects.create(user=user, dn="uid=jdoe,ou=people,dc=example,dc=org")
    assert "uid=jdoe" in admin_client.get("/admin/appliance/directoryaccount/").content.decode()
    html = admin_client.get(f"/admin/appliance/directoryaccount/{account.pk}/change/").content.decode()
    assert 'name="_save"' not in html and "uid=jdoe" in html
    assert admin_client.get("/admin/appliance/directoryaccount/add/").status_code == 403
    assert admin_client.post(f"/admin/appliance/directoryaccount/{account.pk}/delete/").status_code == 403


def test_a_repositorys_page_says_what_it_is_first(
    admin_client, code_repo, django_capture_on_commit_callbacks
):
    from trainer.models import Repository

    form = admin_client.get("/admin/trainer/repository/add/").content.decode()
    assert form.index('name="name"') < form.index('name="source"') < form.index('name="branch"')
    assert "Status reason" not in form  # the add form asks only what the admin types
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/trainer/repository/add/", {"name": "sample", "source": str(code_repo), "_save": "Save"}
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    repo = Repository.objects.get(name="sample")
    page = admin_client.get(f"/admin/trainer/repository/{repo.pk}/change/").content.decode()
    assert _h1(page) == "Repository sample"
    assert page.index("field-source") < page.index("field-status") < page.index('name="branch"')
