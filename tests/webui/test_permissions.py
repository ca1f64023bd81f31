"""Every admin door checks the model permission that fits it: each custom route and each list action
of Hearth's admin is listed here with the permission it needs, and a route or action added without an
entry fails the completeness tests. Staff without the permission get 403 (a route) or no action at all
(nothing changes); with only "view" they read but change nothing; with the permission they succeed.
Also: a staff user's token rate limit is capped at the appliance default, django-q2's pages are
read-only, a base model's imported fields are read-only, the stock serving-policy page keeps the
telemetry rule, and deleting a version is audited with its number."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib import admin
from django.urls import reverse

pytestmark = pytest.mark.django_db

HEARTH_APPS = {"appliance", "trainer", "inference", "django_q"}
PASSWORD = "a-long-password-for-tests"

# URL name → cases of (method, URL kwargs, permission needed, status when permitted). A kwarg value
# naming a row ("run", "version", "note") is replaced by that row's pk.
ROUTES = {
    "trainer_trainingrun_start": [("get", {}, "add", 200)],
    "trainer_trainingrun_live": [("get", {"pk": "run"}, "view", 200)],
    "trainer_trainingrun_cancel": [("post", {"pk": "run"}, "change", 302)],
    "trainer_modelversion_action": [
        ("post", {"pk": "version", "action": "promote"}, "change", 302),
        ("post", {"pk": "version", "action": "retire"}, "change", 302),
        ("post", {"pk": "version", "action": "delete"}, "delete", 302),
        ("get", {"pk": "version", "action": "delete"}, "delete", 200),  # the confirmation page
    ],
    "trainer_modelversion_canary": [("get", {"pk": "version"}, "change", 200)],  # its POST: same check
    "trainer_modelversion_download": [("get", {"pk": "version", "name": "model.gguf"}, "view", 200)],
    "inference_apitoken_new": [("get", {}, "add", 200)],
    "inference_servingpolicy_policies": [("get", {}, "view", 200)],
    "inference_completionrecord_usage": [("get", {}, "view", 200)],
    "appliance_notification_inbox": [("get", {}, "view", 200)],
    "appliance_notification_read_all": [("post", {}, "view", 302)],
    "appliance_notification_read": [("post", {"pk": "note"}, "view", 302)],
}

# (model label, action name) → the permission it needs; None: offered to nobody, superusers included.
ACTIONS = {
    ("trainer.repository", "sync_now"): "change",
    ("trainer.repository", "build_dataset"): "change",
    ("trainer.repository", "retry"): "change",
    ("trainer.repository", "delete_selected"): "delete",
    ("trainer.basemodel", "delete_selected"): "delete",
    ("trainer.dataset", "retry"): "change",
    ("trainer.dataset", "delete_selected"): "delete",
    ("trainer.datasetfile", "delete_selected"): "delete",
    ("trainer.trainingrun", "cancel_runs"): "change",
    ("trainer.trainingrun", "delete_selected"): None,  # a run's dataset, adapter and version hang on it
    ("trainer.modelversion", "promote"): "change",
    ("trainer.modelversion", "retire"): "change",
    ("trainer.modelversion", "delete_versions"): "delete",
    ("trainer.modelversion", "retry"): "change",
    ("trainer.modelversion", "delete_selected"): None,  # "delete_versions" also removes the files
    ("trainer.evaluationreport", "delete_selected"): "delete",
    ("appliance.notification", "delete_selected"): "delete",
    ("appliance.auditentry", "delete_selected"): None,  # append-only
    ("appliance.directoryaccount", "delete_selected"): None,  # a record the directory check keeps
    ("inference.apitoken", "revoke"): "change",
    ("inference.apitoken", "delete_selected"): None,  # a token ends by an audited revoke
    ("inference.servingpolicy", "delete_selected"): "delete",
    ("inference.blockedcode", "delete_selected"): "delete",
    ("inference.completionrecord", "delete_selected"): "delete",
    ("inference.completionevent", "delete_selected"): "delete",
    ("inference.codesnapshot", "delete_selected"): "delete",
    ("inference.filtercount", "delete_selected"): "delete",
    ("inference.flowlog", "delete_selected"): "delete",
    ("django_q.schedule", "delete_selected"): None,
    ("django_q.ormq", "delete_selected"): None,
    ("django_q.success", "delete_selected"): "delete",
    ("django_q.failure", "delete_selected"): "delete",
}

# What each of Hearth's own actions leaves in the audit log when it runs.
ACTION_AUDITS = {
    "sync_now": "repository.sync",
    "build_dataset": "dataset.build",
    "retry": "retry",
    "cancel_runs": "training.cancel",
    "promote": "model.promote",
    "retire": "model.retire",
    "delete_versions": "model.delete",
    "revoke": "token.revoke",
}


def _hearth_admins():
    return [(m, a) for m, a in admin.site._registry.items() if m._meta.app_label in HEARTH_APPS]


def _custom_routes() -> dict[str, object]:
    """URL name → model admin, for every route a Hearth admin adds to Django's stock ones."""
    found = {}
    for _, model_admin in _hearth_admins():
        stock = {p.name for p in admin.ModelAdmin.get_urls(model_admin)}
        for pattern in model_admin.get_urls():
            if pattern.name not in stock:
                found[pattern.name] = model_admin
    return found


def _perm(model, action: str) -> str:
    from django.contrib.auth import get_permission_codename

    return f"{model._meta.app_label}.{get_permission_codename(action, model._meta)}"


def _staff(django_user_model, name: str, perms: list[str] = ()):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(name, password=PASSWORD, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return django_user_model.objects.get(pk=user.pk)  # no cached permissions


def _client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def rows(tmp_path):
    """One row of each kind the custom routes act on, each in a state its actions accept."""
    from appliance.notifications import notify
    from trainer.models import BaseModel, Dataset, ModelVersion, TrainingRun

    base = BaseModel.objects.create(slug="tiny", display_name="Tiny", status="ready")
    dataset = Dataset.objects.create(status="ready")
    run = TrainingRun.objects.create(base=base, dataset=dataset, status="queued")
    folder = tmp_path / "version"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(b"GGUF model bytes")
    version = ModelVersion.objects.create(
        base=base,
        run=run,
        status="candidate",
        gate_passed=True,  # the gate promoted it: promoting needs no override reason
        path=str(folder),
        gguf_path=str(folder / "model.gguf"),
        manifest={"gguf": {"model.gguf": "0" * 64}},
    )
    return {"run": run, "version": version, "note": notify(title="Run 1 finished")}


def _db_state() -> tuple:
    """Everything the custom routes and actions could change."""
    from appliance.models import AuditEntry, NotificationRead
    from inference.models import ApiToken
    from trainer.models import Dataset, ModelVersion, Repository, TrainingRun

    return (
        AuditEntry.objects.count(),
        NotificationRead.objects.count(),
        *(
            sorted(model.objects.values_list("pk", "status", "status_reason"))
            for model in (Repository, Dataset, TrainingRun, ModelVersion)
        ),
        sorted(TrainingRun.objects.values_list("pk", "cancel_requested")),
        sorted(ApiToken.objects.values_list("pk", "revoked_at")),
    )


# ---------------------------------------------------------------- custom routes


def test_every_custom_route_has_a_permission_entry():
    routes = _custom_routes()
    assert set(routes) == set(ROUTES), (
        f"routes without an entry: {sorted(set(routes) - set(ROUTES))}; "
        f"entries without a route: {sorted(set(ROUTES) - set(routes))}"
    )


ROUTE_CASES = [
    pytest.param(name, *case, id=f"{name}-{case[0]}-{case[1].get('action', '')}")
    for name, cases in ROUTES.items()
    for case in cases
]


@pytest.mark.parametrize("name, method, kwargs, needed, ok_status", ROUTE_CASES)
def test_a_custom_route_needs_its_permission(
    name, method, kwargs, needed, ok_status, rows, django_user_model
):
    model = _custom_routes()[name].model
    url = reverse(f"admin:{name}", kwargs={k: rows[v].pk if v in rows else v for k, v in kwargs.items()})
    nobody = _staff(django_user_model, "nobody")
    viewer = _staff(django_user_model, "viewer", [_perm(model, "view")])
    holder = _staff(django_user_model, "holder", [_perm(model, "view"), _perm(model, needed)])

    before = _db_state()
    assert getattr(_client(nobody), method)(url).status_code == 403
    assert _db_state() == before
    response = getattr(_client(viewer), method)(url)
    if needed == "view":
        assert response.status_code == ok_status
    else:
        assert response.status_code == 403 and _db_state() == before
    response = getattr(_client(holder), method)(url)
    assert response.status_code == ok_status, response.content[:500]
    if method == "post":
        assert _db_state() != before  # it did what it is for
    response.close()


def test_the_version_action_page_asks_delete_only_to_delete(rows, django_user_model):
    from trainer.models import ModelVersion

    version = rows["version"]
    changer = _staff(
        django_user_model, "changer", [_perm(ModelVersion, "view"), _perm(ModelVersion, "change")]
    )
    url = reverse("admin:trainer_modelversion_action", args=[version.pk, "delete"])
    assert _client(changer).post(url).status_code == 403 and ModelVersion.objects.filter(pk=version.pk)
    url = reverse("admin:trainer_modelversion_action", args=[version.pk, "retire"])
    assert _client(changer).post(url).status_code == 302
    assert ModelVersion.objects.get(pk=version.pk).status == "retired"


# ---------------------------------------------------------------- list actions


def test_every_list_action_has_a_permission_entry():
    found = {
        (model._meta.label_lower, name)
        for model, model_admin in _hearth_admins()
        for _, name, _ in model_admin._get_base_actions()
    }
    assert found == set(ACTIONS), (
        f"actions without an entry: {sorted(found - set(ACTIONS))}; "
        f"entries without an action: {sorted(set(ACTIONS) - found)}"
    )


def _model_admin(label: str):
    from django.apps import apps

    model = apps.get_model(label)
    return model, admin.site._registry[model]


@pytest.mark.parametrize("label, action", sorted(ACTIONS), ids=[f"{k[0]}-{k[1]}" for k in sorted(ACTIONS)])
def test_a_list_action_is_offered_only_with_its_permission(label, action, django_user_model, rf):
    model, model_admin = _model_admin(label)
    needed = ACTIONS[(label, action)]
    users = {
        "nobody": _staff(django_user_model, "nobody"),
        "viewer": _staff(django_user_model, "viewer", [_perm(model, "view")]),
        "superuser": django_user_model.objects.create_superuser("root", "root@hearth.invalid", PASSWORD),
    }
    if needed:
        users["holder"] = _staff(django_user_model, "holder", [_perm(model, "view"), _perm(model, needed)])
    for who, user in users.items():
        request = rf.get("/admin/")
        request.user = user
        offered = action in model_admin.get_actions(request)
        expected = needed is not None and (who in {"superuser", "holder"} or needed == "view")
        assert offered == expected, (who, offered)


@pytest.fixture
def action_row(tmp_path):
    """A row in the state the named Hearth action acts on, for the given user (tokens are their own)."""
    from inference.auth import token_create
    from trainer.models import BaseModel, Dataset, ModelVersion, Repository, TrainingRun

    def make(label: str, action: str, user):
        base = BaseModel.objects.create(slug=f"base-{user.pk}", display_name="Base", status="ready")
        dataset = Dataset.objects.create(status="ready")
        run = TrainingRun.objects.create(base=base, dataset=dataset, status="succeeded")
        folder = tmp_path / f"v-{user.pk}"
        folder.mkdir()
        (folder / "model.gguf").write_bytes(b"GGUF")
        version = {"base": base, "run": run, "path": str(folder), "gguf_path": str(folder / "model.gguf")}
        match label, action:
            case "trainer.repository", "retry":
                return Repository.objects.create(name=f"r{user.pk}", source="/srv/r.git", status="failed")
            case "trainer.repository", _:
                return Repository.objects.create(name=f"r{user.pk}", source="/srv/r.git", status="ready")
            case "trainer.dataset", "retry":
                return Dataset.objects.create(status="failed")
            case "trainer.trainingrun", "cancel_runs":
                return TrainingRun.objects.create(base=base, dataset=dataset, status="queued")
            case "trainer.modelversion", "retry":
                return ModelVersion.objects.create(status="failed", **version)
            case "trainer.modelversion", _:
                return ModelVersion.objects.create(status="candidate", gate_passed=True, **version)
            case "inference.apitoken", "revoke":
                return token_create(username=user.get_username(), name="laptop")[0]
        raise AssertionError(f"no row for {label} {action}")

    return make


HEARTH_ACTIONS = sorted(k for k in ACTIONS if k[1] in ACTION_AUDITS)


@pytest.mark.parametrize("label, action", HEARTH_ACTIONS, ids=[f"{k[0]}-{k[1]}" for k in HEARTH_ACTIONS])
def test_a_list_action_runs_only_with_its_permission(label, action, action_row, django_user_model):
    from appliance.models import AuditEntry

    model, _ = _model_admin(label)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    needed = ACTIONS[(label, action)]
    nobody = _staff(django_user_model, "nobody")
    viewer = _staff(django_user_model, "viewer", [_perm(model, "view")])
    holder = _staff(django_user_model, "holder", [_perm(model, "view"), _perm(model, needed)])

    for user, allowed in ((nobody, False), (viewer, False), (holder, True)):
        row = action_row(label, action, user)
        before = _db_state()
        response = _client(user).post(url, {"action": action, "_selected_action": [row.pk]})
        if not allowed:
            # 403 without view; with it, the list again (no action offered at all) or "No action selected"
            assert response.status_code in (200, 302, 403), user
            assert _db_state() == before, f"{user} ran {action}"
        else:
            assert response.status_code == 302
            assert AuditEntry.objects.filter(action=ACTION_AUDITS[action], actor="holder").exists()
    assert not AuditEntry.objects.filter(actor__in=["nobody", "viewer"]).exists()


def test_a_staff_user_without_view_permission_sees_no_tokens(django_user_model):
    from inference.auth import token_create
    from inference.models import ApiToken

    nobody = _staff(django_user_model, "nobody")
    token_create(username="nobody", name="laptop")
    assert _client(nobody).get("/admin/inference/apitoken/").status_code == 403
    viewer = _staff(django_user_model, "viewer", [_perm(ApiToken, "view")])
    token_create(username="viewer", name="desktop")
    page = _client(viewer).get("/admin/inference/apitoken/").content.decode()
    assert "desktop" in page and "laptop" not in page  # their own only


# ---------------------------------------------------------------- token rate limits


def test_a_staff_users_token_rate_limit_is_capped_at_the_appliance_default(
    django_user_model, settings, admin_client
):
    from inference.models import ApiToken

    settings.HEARTH_RATE_LIMIT = 600
    sam = _staff(django_user_model, "sam", [_perm(ApiToken, "view"), _perm(ApiToken, "add")])
    client, url = _client(sam), reverse("admin:inference_apitoken_new")

    for limit in (601, 100000):
        page = client.post(url, {"user": sam.pk, "name": "fast", "rate_limit_per_minute": limit})
        assert page.status_code == 200 and not ApiToken.objects.exists()
        assert "At most 600 requests per minute, the appliance default" in page.content.decode()
    assert "At most 600, the appliance default." in client.get(url).content.decode()  # the help text
    client.post(url, {"user": sam.pk, "name": "default"})  # empty: the default, which is allowed
    client.post(url, {"user": sam.pk, "name": "slow", "rate_limit_per_minute": 600})
    assert dict(ApiToken.objects.values_list("name", "rate_limit_per_minute")) == {
        "default": None,
        "slow": 600,
    }

    # A superuser sets any limit, for anyone.
    admin_client.post(url, {"user": sam.pk, "name": "build bot", "rate_limit_per_minute": 100000})
    assert ApiToken.objects.get(name="build bot").rate_limit_per_minute == 100000

    settings.HEARTH_RATE_LIMIT = 0  # no appliance limit at all: nothing to cap at
    client.post(url, {"user": sam.pk, "name": "unlimited", "rate_limit_per_minute": 100000})
    assert ApiToken.objects.get(name="unlimited").rate_limit_per_minute == 100000


# ---------------------------------------------------------------- django-q2's pages


def test_django_q_pages_are_read_only(admin_client, rf, django_user_model):
    from django_q.models import Failure, OrmQ, Schedule, Success

    schedule = Schedule.objects.create(name="probe", func="math.floor", args="1")
    assert admin_client.get("/admin/django_q/schedule/").status_code == 200
    assert admin_client.get("/admin/django_q/schedule/add/").status_code == 403
    r = admin_client.post(
        "/admin/django_q/schedule/add/", {"name": "evil", "func": "os.system", "args": "'true'"}
    )
    assert r.status_code == 403 and not Schedule.objects.filter(name="evil").exists()
    r = admin_client.post(
        f"/admin/django_q/schedule/{schedule.pk}/change/",
        {"name": "probe", "func": "os.system", "args": "'true'", "schedule_type": "O", "repeats": "-1"},
    )
    assert r.status_code == 403 and Schedule.objects.get(pk=schedule.pk).func == "math.floor"
    assert admin_client.get(f"/admin/django_q/schedule/{schedule.pk}/change/").status_code == 200  # read
    assert admin_client.get("/admin/django_q/ormq/add/").status_code == 403

    request = rf.get("/admin/")
    request.user = django_user_model.objects.get(username="admin")
    for model in (Schedule, OrmQ, Success, Failure):
        model_admin = admin.site._registry[model]
        assert not model_admin.has_add_permission(request) and not model_admin.has_change_permission(request)
        assert "resubmit_task" not in model_admin.get_actions(request), model


# ---------------------------------------------------------------- base models


def test_a_base_models_imported_fields_cannot_be_changed_in_the_admin(admin_client):
    from trainer.models import BaseModel

    base = BaseModel.objects.create(
        slug="tiny",
        display_name="Tiny",
        hf_path="/models/tiny",
        gguf_path="/models/tiny/tiny.gguf",
        fim_format="qwen",
        can_infill=True,
        status="ready",
    )
    r = admin_client.post(
        f"/admin/trainer/basemodel/{base.pk}/change/",
        {
            "slug": "tiny",
            "display_name": "Tiny coder",
            "license": "apache-2.0",
            "hf_path": "/tmp/elsewhere",
            "train_gguf_file": "other.gguf",
            "gguf_path": "/tmp/elsewhere/evil.gguf",
            "architecture": "other",
            "fim_format": "starcoder",
            "manifest": "{}",
        },  # can_infill unticked
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    base.refresh_from_db()
    assert base.display_name == "Tiny coder" and base.license == "apache-2.0"  # what may be edited
    assert (base.hf_path, base.gguf_path, base.train_gguf_file) == (
        "/models/tiny",
        "/models/tiny/tiny.gguf",
        "",
    )
    assert (base.fim_format, base.can_infill) == ("qwen", True)
    assert admin_client.get("/admin/trainer/basemodel/add/").status_code == 403  # only by import


# ---------------------------------------------------------------- the stock serving-policy page


def test_the_stock_serving_policy_page_keeps_the_telemetry_rule(admin_client):
    from inference.policy import policy_get

    policy = policy_get()
    data = {
        "telemetry_content": "on",  # without telemetry_enabled
        "retention_days": "28",
        "exclusion_globs": "",
        "response_filters": '["email", "url", "ip", "credential"]',
        "repository_context": "on",
    }
    r = admin_client.post(f"/admin/inference/servingpolicy/{policy.pk}/change/", data)
    assert r.status_code == 200 and "Content collection needs telemetry" in r.content.decode()
    policy.refresh_from_db()
    assert not policy.telemetry_content and not policy.telemetry_enabled

    r = admin_client.post(
        f"/admin/inference/servingpolicy/{policy.pk}/change/", {**data, "telemetry_enabled": "on"}
    )
    assert r.status_code == 302
    policy.refresh_from_db()
    assert policy.telemetry_content and policy.telemetry_enabled


# ---------------------------------------------------------------- audit of a deleted version


def test_the_delete_action_audits_the_versions_number(admin_client, rows):
    from appliance.models import AuditEntry
    from trainer.models import ModelVersion

    version = rows["version"]
    folder = Path(version.path)
    r = admin_client.post(
        "/admin/trainer/modelversion/", {"action": "delete_versions", "_selected_action": [version.pk]}
    )
    assert r.status_code == 302 and not ModelVersion.objects.exists() and not folder.exists()
    entry = AuditEntry.objects.get(action="model.delete")
    assert entry.target == f"version {version.pk}"
    assert "None" not in " ".join(m.message for m in r.wsgi_request._messages)
