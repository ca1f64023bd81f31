"""The admin pages: every pipeline row visible in a browser, read-mostly, with the stage logs."""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_permission_codename, get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django_q import admin as q_admin  # its pages, registered before Hearth's, are replaced below
from django_q.models import Failure, OrmQ, Schedule, Success

from appliance.audit import request_audit
from appliance.models import AuditEntry, DirectoryAccount, Notification
from inference.models import ApiToken
from trainer.models import (
    BaseModel,
    Dataset,
    EvaluationReport,
    ModelVersion,
    Repository,
    TrainingRun,
)
from trainer.models.datasets import DatasetFile
from webui.admin_display import (
    breakable,
    count,
    count_column,
    digest_short,
    structured_field,
    when,
    when_column,
)
from webui.admin_site import HearthTitlesMixin, ShownNotSavedMixin, register_replacing, site_configure
from webui.forms import ServingPolicyForm
from webui.reports import html_table, report_html

site_configure(admin.site)
_stock_index = admin.site.index


def _dashboard_index(request, extra_context=None):
    """The admin index with the dashboard above the model list (webui/dashboard.py)."""
    from webui.dashboard import dashboard_context

    return _stock_index(request, {**dashboard_context(), **(extra_context or {})})


admin.site.index = _dashboard_index


class ReadOnlyLogMixin:
    readonly_fields = ("status", "status_reason", "log", "created_at", "updated_at")


def model_permitted(request, opts, action: str) -> bool:
    """Whether the signed-in user holds Django's `action` permission ("view", "add", "change" or
    "delete") on the model of `opts`; a superuser holds every one. "view" is also met by "change",
    as in Django's own admin."""

    def held(name: str) -> bool:
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename(name, opts)}")

    return held(action) or (action == "view" and held("change"))


class ModelPermissionsMixin:
    """The model's Django permissions by name, for the list actions (`permissions=["model_change"]`).
    Several Hearth admins answer False to has_change_permission or has_delete_permission whatever the
    user holds, to keep their stock pages read-only; their actions still need the permission itself."""

    def has_model_change_permission(self, request) -> bool:
        return model_permitted(request, self.opts, "change")

    def has_model_delete_permission(self, request) -> bool:
        return model_permitted(request, self.opts, "delete")


class RepositoryForm(forms.ModelForm):
    """The credential is write-only: typed in, stored encrypted, never shown again."""

    new_credential = forms.CharField(
        label="Password, token or SSH key",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="For an intranet URL. Stored encrypted; leave empty to keep the current one.",
    )

    class Meta:
        model = Repository
        fields = ("name", "source", "branch", "username", "languages", "exclude_globs")

    def clean_source(self):
        from appliance.errors import MirrorError
        from trainer.mirrors.services import repository_source_parse

        source = self.cleaned_data["source"]
        if self.instance.pk:
            return source
        try:
            repository_source_parse(source)
        except MirrorError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return source


class RetryMixin:
    """The "Retry" action: a failed row (one the stuck-row watchdog released, or any failure) is
    queued again."""

    @admin.action(description="Retry the selected failed rows", permissions=["model_change"])
    def retry(self, request, queryset):
        from appliance.errors import HearthError
        from trainer.watchdog import row_label, row_retry

        for row in queryset:
            try:
                done = row_retry(row)
            except HearthError as exc:
                self.message_user(request, str(exc), level="error")
                continue
            request_audit(request, action="retry", target=row_label(row), detail=done)
            self.message_user(request, f"{row_label(row).capitalize()}: {done}.")


@admin.register(Repository)
class RepositoryAdmin(
    HearthTitlesMixin, ModelPermissionsMixin, RetryMixin, ReadOnlyLogMixin, admin.ModelAdmin
):
    form = RepositoryForm
    list_display = ("name", "status", "default_branch", "head", "synced", "has_credential")
    list_filter = ("status",)
    search_fields = ("name", "source")
    readonly_fields = ReadOnlyLogMixin.readonly_fields + (
        "mirror_path",
        "default_branch",
        "head_sha",
        "last_synced_at",
    )
    actions = ("sync_now", "build_dataset", "retry")
    synced = when_column("last_synced_at", "last synced")

    def object_title(self, obj) -> str:
        return f"Repository {obj.name}"

    @admin.display(description="commit", ordering="head_sha")
    def head(self, obj):
        return digest_short(obj.head_sha)

    @admin.display(boolean=True, description="credential")
    def has_credential(self, obj):
        return bool(obj.credential)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("source", "name") if obj else ())

    def get_fieldsets(self, request, obj=None):
        """What it is first, then what Hearth reads of it, then how it is reached, then the last sync;
        the add form asks only what the admin types."""
        reading = ("branch", "languages", "exclude_globs")
        access = ("username", "new_credential")
        if obj is None:
            return ((None, {"fields": ("name", "source", *reading)}), ("Access", {"fields": access}))
        return (
            (None, {"fields": ("name", "source", "status", "status_reason")}),
            ("What Hearth reads", {"fields": reading}),
            ("Access", {"fields": access}),
            (
                "Last sync",
                {
                    "fields": (
                        "default_branch",
                        "head_sha",
                        "last_synced_at",
                        "mirror_path",
                        "log",
                        "created_at",
                    )
                },
            ),
        )

    def save_model(self, request, obj, form, change):
        from appliance.jobs import job_enqueue
        from trainer.mirrors.services import repository_create, repository_credential_set

        secret = form.cleaned_data.get("new_credential") or ""
        if change:
            super().save_model(request, obj, form, change)
            if secret:
                repository_credential_set(repo=obj, credential=secret)
            return
        created = repository_create(
            source=obj.source,
            name=obj.name,
            branch=obj.branch,
            username=obj.username,
            credential=secret,
            exclude_globs=obj.exclude_globs,
        )
        obj.pk = created.pk
        obj.refresh_from_db()
        job_enqueue("trainer.mirrors.tasks.repository_sync_task", obj.pk)
        request_audit(request, action="repository.add", target=f"repository {obj.name}", detail=obj.source)
        self.message_user(request, f"{obj.name} registered; its first sync runs in the background.")

    @admin.action(description="Sync the selected repositories now", permissions=["model_change"])
    def sync_now(self, request, queryset):
        from appliance.jobs import job_enqueue

        for repo in queryset:
            job_enqueue("trainer.mirrors.tasks.repository_sync_task", repo.pk)
            request_audit(request, action="repository.sync", target=f"repository {repo.name}")
        self.message_user(request, f"Sync queued for {queryset.count()} repositories.")

    @admin.action(description="Build a dataset from the selected repositories", permissions=["model_change"])
    def build_dataset(self, request, queryset):
        from appliance.jobs import job_enqueue

        job_enqueue(
            "trainer.datasets.tasks.dataset_build_task", sorted(queryset.values_list("pk", flat=True))
        )
        request_audit(request, action="dataset.build", detail=", ".join(r.name for r in queryset))
        self.message_user(request, "Dataset build queued; it appears under Datasets with its report.")


@admin.register(BaseModel)
class BaseModelAdmin(HearthTitlesMixin, ReadOnlyLogMixin, admin.ModelAdmin):
    """A base model comes from `manage.py basemodel_import`, which verifies its files and detects its
    FIM format: here only its display name and licence are edited (one Save, no Delete button: a
    base model is deleted from the list, where nothing depends on it)."""

    list_display = ("slug", "display_name", "status", "architecture", "fim_format", "can_infill")
    readonly_fields = ReadOnlyLogMixin.readonly_fields + (
        "slug",
        "hf_path",
        "train_gguf_file",
        "gguf_path",
        "architecture",
        "fim_format",
        "can_infill",
        "manifest_view",
    )
    fieldsets = (
        (None, {"fields": ("slug", "display_name", "license", "status", "status_reason")}),
        (
            "Model",
            {
                "fields": (
                    "architecture",
                    "fim_format",
                    "can_infill",
                    "hf_path",
                    "train_gguf_file",
                    "gguf_path",
                )
            },
        ),
        ("Manifest", {"fields": ("manifest_view",)}),
        ("Log", {"classes": ("collapse",), "fields": ("log", "created_at", "updated_at")}),
    )
    manifest_view = structured_field("manifest", "manifest")

    def object_title(self, obj) -> str:
        return f"Base model {obj.slug}"

    def has_add_permission(self, request):
        return False  # imported from a folder (basemodel_import), never typed in

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"show_save_and_continue": False, "show_save_and_add_another": False, "show_delete": False}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})


@admin.register(Dataset)
class DatasetAdmin(ShownNotSavedMixin, ModelPermissionsMixin, RetryMixin, ReadOnlyLogMixin, admin.ModelAdmin):
    """A dataset is built by "Build a dataset" on repositories or by "Start a custom model": its page
    shows the build (report, commits, options, manifest), never a form."""

    list_display = (
        "id",
        "status",
        "train_count",
        "heldout_count",
        "bytes_count",
        "tokens",
        "duplicate_ratio",
        "secrets",
        "created",
    )
    list_filter = ("status", "repositories")
    actions = ("retry",)
    readonly_fields = ReadOnlyLogMixin.readonly_fields + (
        "commits_view",
        "options_view",
        "manifest_view",
        "path",
        "report_view",
        "files_link",
    )
    fieldsets = (
        (None, {"fields": ("status", "status_reason", "path", "commits_view", "files_link")}),
        ("Report", {"fields": ("report_view",)}),
        (
            "Details",
            {
                "classes": ("collapse",),
                "fields": ("options_view", "manifest_view", "log", "created_at", "updated_at"),
            },
        ),
    )
    train_count = count_column("train_files", "training files")
    heldout_count = count_column("heldout_files", "held-out files")
    bytes_count = count_column("train_bytes", "training bytes")
    created = when_column("created_at", "created")
    commits_view = structured_field("commits", "commits")
    options_view = structured_field("options", "options")
    manifest_view = structured_field("manifest", "manifest")

    @admin.display(description="tokens (est.)")
    def tokens(self, obj):
        return f"{obj.report.get('tokens', {}).get('total', 0):,}"

    @admin.display(description="duplicates")
    def duplicate_ratio(self, obj):
        return f"{obj.report.get('duplicates', {}).get('ratio', 0):.1%}"

    @admin.display(description="secrets scrubbed")
    def secrets(self, obj):
        return count(obj.report.get("secrets", {}).get("total", 0))

    @admin.display(description="files")
    def files_link(self, obj):
        from django.urls import reverse

        url = reverse("admin:trainer_datasetfile_changelist")
        dropped = obj.files.filter(split="dropped").count()
        return format_html(
            '<a href="{}?dataset__id__exact={}">All {} files</a> · '
            '<a href="{}?dataset__id__exact={}&split__exact=dropped">the {} left out, with reasons</a> · '
            '<a href="{}?dataset__id__exact={}&split__exact=heldout">held out</a>',
            url,
            obj.pk,
            obj.files.count(),
            url,
            obj.pk,
            dropped,
            url,
            obj.pk,
        )

    @admin.display(description="report")
    def report_view(self, obj):
        r = obj.report
        if not r or "tokens" not in r:
            return "No report yet."
        d, s, t = r["duplicates"], r["secrets"], r["tokens"]
        summary = html_table(
            ("", "files", "bytes"),
            [
                ("read", f"{r['seen_files']:,}", f"{r['seen_bytes']:,}"),
                ("kept", f"{r['kept_files']:,}", f"{r['kept_bytes']:,}"),
                ("training", f"{r['train_files']:,}", f"{r['train_bytes']:,}"),
                ("held out", f"{r['heldout_files']:,}", f"{r['heldout_bytes']:,}"),
            ],
        )
        reasons = html_table(
            ("left out because", "files", "bytes"),
            [(k, f"{v:,}", f"{r['skipped_bytes'].get(k, 0):,}") for k, v in r["skipped"].items()],
        )
        languages = html_table(
            ("language", "files", "bytes", "tokens"),
            [
                (k, f"{v['files']:,}", f"{v['bytes']:,}", f"{v['tokens']:,}")
                for k, v in sorted(r["by_language"].items(), key=lambda kv: -kv[1]["files"])
            ],
        )
        repos = html_table(
            ("repository", "commit", "files read", "kept", "bytes kept", "tokens"),
            [
                (
                    k,
                    digest_short(r["commits"].get(k, "")),
                    f"{v.get('seen_files', 0):,}",
                    f"{v.get('kept_files', 0):,}",
                    f"{v.get('kept_bytes', 0):,}",
                    f"{v.get('tokens', 0):,}",
                )
                for k, v in r["by_repo"].items()
            ],
        )
        kinds = html_table(
            ("secret kind", "hits"), [(k, v) for k, v in s["by_kind"].items()] or [("none", 0)]
        )
        hits = html_table(
            ("repository", "file", "line", "kind"),
            [(h["repo"], h["path"], h["line"], h["kind"]) for h in s["hits"][:200]],
        )
        heldout = format_html_join(
            "", "<li>{}: {}</li>", ((h["repo"], h["path"]) for h in r["heldout"][:500])
        )
        return format_html(
            "{}<p>Tokens: {} training, {} held out ({}).</p>"
            "<p>Duplicates: {} exact and {} near (MinHash, threshold {}, {}) of {} files checked: {}.</p>"
            "<h3>Left out</h3>{}<h3>Languages kept</h3>{}<h3>Repositories</h3>{}"
            "<h3>Secrets and personal data scrubbed: {} in {} files</h3>{}"
            "<details><summary>Where (file, line, kind; values are never stored)</summary>{}</details>"
            "<details><summary>{} held-out files</summary><ul>{}</ul></details>",
            summary,
            f"{t['train']:,}",
            f"{t['heldout']:,}",
            t["method"],
            d["exact"],
            d["near"],
            d["near_threshold"],
            d["near_mode"],
            d["checked_files"],
            f"{d['ratio']:.1%}",
            reasons,
            languages,
            repos,
            s["total"],
            s["files"],
            kinds,
            hits,
            r["heldout_files"],
            heldout,
        )


@admin.register(DatasetFile)
class DatasetFileAdmin(HearthTitlesMixin, admin.ModelAdmin):
    """Every file a dataset read, kept or left out: search by path, filter by reason."""

    list_display = (
        "file_path",
        "repo",
        "split",
        "reason",
        "detail",
        "language",
        "bytes",
        "secrets",
        "dataset_number",
    )
    list_filter = ("split", "reason", "language", "repo", "dataset")
    search_fields = ("path", "detail")
    list_per_page = 200
    bytes = count_column("size", "bytes")

    def object_title(self, obj) -> str:
        return f"File {obj.path}"

    @admin.display(description="path", ordering="path")
    def file_path(self, obj):
        return breakable(obj.path)

    @admin.display(description="dataset", ordering="dataset")
    def dataset_number(self, obj):
        return obj.dataset_id

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _admin_urls(model_admin, routes):
    """Custom admin views (webui/views.py) under the model's admin URLs. Each route is (route, view,
    name, permission): admin_view lets in active staff only, then the user needs the model permission
    the route names ("view", "add", "change", "delete"; or a function of the URL's arguments that
    returns one), else 403."""
    site = model_admin.admin_site
    opts = model_admin.model._meta

    def wrap(view, permission):
        def wrapped(request, *args, **kwargs):
            needed = permission(**kwargs) if callable(permission) else permission
            if not model_permitted(request, opts, needed):
                raise PermissionDenied(f"This page needs the “{needed} {opts.verbose_name}” permission.")
            return view(request, site, *args, **kwargs)

        return site.admin_view(wrapped)

    return [
        path(route, wrap(view, permission), name=f"{opts.app_label}_{opts.model_name}_{name}")
        for route, view, name, permission in routes
    ]


@admin.register(TrainingRun)
class TrainingRunAdmin(ShownNotSavedMixin, ModelPermissionsMixin, ReadOnlyLogMixin, admin.ModelAdmin):
    """Runs are started from "Start a custom model" and change only through their jobs and cancel:
    no add form, every field read-only, the page live while the run trains."""

    list_display = (
        "id",
        "base",
        "dataset",
        "status",
        "method",
        "steps",
        "attempts",
        "created",
    )
    list_filter = ("status", "method")
    actions = ["cancel_runs"]  # progress points are drawn as the chart of the live panel
    created = when_column("created_at", "created")

    @admin.display(description="steps", ordering="step")
    def steps(self, obj):
        return f"{count(obj.step)} of {count(obj.total_steps)}" if obj.total_steps else count(obj.step)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a run's dataset, adapter and version hang on it

    def has_change_permission(self, request, obj=None):
        return False

    def get_urls(self):
        from webui import views

        return (
            _admin_urls(
                self,
                [
                    # The preview is the start form's first step: it reads the repositories the
                    # run would train on and stores nothing, so it needs what starting needs.
                    ("start/", views.training_start_view, "start", "add"),
                    ("<int:pk>/live/", views.run_live_view, "live", "view"),
                    ("<int:pk>/cancel/", views.run_cancel_view, "cancel", "change"),
                ],
            )
            + super().get_urls()
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from webui.live import run_live_context

        run = self.get_object(request, object_id)
        extra = run_live_context(run) if run else {}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.action(description="Cancel the selected runs", permissions=["model_change"])
    def cancel_runs(self, request, queryset):
        from appliance.errors import HearthError
        from trainer.training.services import training_run_cancel

        for run in queryset:
            try:
                training_run_cancel(run=run)
                request_audit(request, action="training.cancel", target=f"run {run.pk}")
            except HearthError as exc:
                self.message_user(request, str(exc), level="warning")


class ReportComparisonMixin:
    @admin.display(description="Base against candidate")
    def comparison(self, obj):
        if not (obj and obj.pk):
            return "-"
        return report_html(obj.metrics or {}, obj.decision, obj.version.served_arm if obj.version else "")


class ReportInline(ReportComparisonMixin, admin.StackedInline):
    model = EvaluationReport
    extra = 0
    can_delete = False
    # The charts and tables; the raw metrics stay on the evaluation report's own page.
    fields = ("created_at", "comparison", "report_link")
    readonly_fields = ("created_at", "comparison", "report_link")

    @admin.display(description="report")
    def report_link(self, obj):
        from django.urls import reverse

        if not obj or not obj.pk:
            return "-"
        url = reverse("admin:trainer_evaluationreport_change", args=[obj.pk])
        return format_html('<a href="{}">Evaluation report {} (all metrics, log)</a>', url, obj.pk)


@admin.register(ModelVersion)
class ModelVersionAdmin(
    ShownNotSavedMixin, ModelPermissionsMixin, RetryMixin, ReadOnlyLogMixin, admin.ModelAdmin
):
    list_display = ("id", "base", "run", "status", "fim_format", "promoted")
    list_filter = ("status",)
    # A version changes only through its actions (promote, retire, delete): every field is read-only.
    readonly_fields = ReadOnlyLogMixin.readonly_fields + (
        "base",
        "run",
        "path",
        "fim_format",
        "gguf_path",
        "gguf_sha256_short",
        "manifest_view",
        "promoted_at",
        "decision",
        "lifecycle",
        "files",
    )
    fieldsets = (
        (
            None,
            {"fields": ("status", "status_reason", "base", "run", "promoted_at", "decision", "lifecycle")},
        ),
        ("GGUF files", {"fields": ("files",)}),
        (
            "Details",
            {
                "classes": ("collapse",),
                "fields": (
                    "fim_format",
                    "path",
                    "gguf_path",
                    "gguf_sha256_short",
                    "log",
                    "manifest_view",
                    "created_at",
                    "updated_at",
                ),
            },
        ),
    )
    inlines = [ReportInline]
    actions = ["promote", "retire", "delete_versions", "retry"]
    promoted = when_column("promoted_at", "promoted")
    manifest_view = structured_field("manifest", "manifest")

    @admin.display(description="GGUF sha256")
    def gguf_sha256_short(self, obj):
        return digest_short(obj.gguf_sha256, 16)

    def has_add_permission(self, request):
        return False  # versions come from training runs

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # through "delete" with its confirmation page, which also removes the files

    def get_urls(self):
        from webui import views

        return (
            _admin_urls(
                self,
                [
                    (
                        "<int:pk>/do/<str:action>/",
                        views.version_action_view,
                        "action",
                        views.version_action_permission,
                    ),
                    ("<int:pk>/download/<str:name>", views.version_download_view, "download", "view"),
                ],
            )
            + super().get_urls()
        )

    @admin.display(description="promotion gate")
    def decision(self, obj):
        """The gate's verdict when the version was evaluated, labelled as such, then what the version
        is now; while it is served against that verdict, a warning with the admin's reason first."""
        from webui.dashboard import override_flag
        from webui.reports import decision_html

        report = obj.reports.order_by("-created_at").first()
        verdict = (
            format_html(
                '<p class="hearth-verdict-label"><b>Gate verdict at evaluation:</b></p>{}',
                decision_html(report.decision),
            )
            if report and report.decision
            else "No evaluation yet."
        )
        now = {
            ModelVersion.Status.PROMOTED: "served to every developer"
            + (f" since {obj.promoted_at:%Y-%m-%d %H:%M} UTC" if obj.promoted_at else ""),
            ModelVersion.Status.CANDIDATE: "a candidate, not served",
            ModelVersion.Status.RETIRED: "retired, not served",
        }.get(obj.status)
        return format_html(
            "{}{}{}",
            override_flag(obj) or "",
            verdict,
            format_html('<p class="hearth-now"><b>Now:</b> {}.</p>', now) if now else "",
        )

    @admin.display(description="actions")
    def lifecycle(self, obj):
        allowed = [
            a
            for a in ("promote", "retire")
            if obj.can_transition(
                {"promote": ModelVersion.Status.PROMOTED, "retire": ModelVersion.Status.RETIRED}[a]
            )
        ]
        against = "" if obj.gate_passed is True else " against the gate (needs a reason)"
        labels = {
            "promote": (
                "Roll back to this version"
                if obj.status == ModelVersion.Status.RETIRED
                else "Promote (serve)"
            )
            + against,
            "retire": "Retire",
            "delete": "Delete",
        }
        return format_html_join(
            " ",
            '<a class="hearth-button{}" href="{}">{}</a>',
            (
                (
                    " danger" if a == "delete" else "",
                    reverse("admin:trainer_modelversion_action", args=[obj.pk, a]),
                    labels[a],
                )
                for a in [*allowed, "delete"]
            ),
        )

    @admin.display(description="files")
    def files(self, obj):
        from webui.views import version_files

        rows = version_files(obj)
        if not rows:
            return "No GGUF file on disk yet."
        return html_table(
            ("file", "size", "sha256"),
            [
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:trainer_modelversion_download", args=[obj.pk, n]),
                        n,
                    ),
                    f"{size / 1e6:,.1f} MB",
                    digest_short(sha, 16),
                )
                for n, sha, size in rows
            ],
        )

    def _each(self, request, queryset, action: str) -> None:
        from appliance.errors import HearthError
        from trainer import versions

        for version in queryset:
            pk = version.pk  # a deleted row's pk is None afterwards
            try:
                getattr(versions, f"model_version_{action}")(version=version)
                request_audit(request, action=f"model.{action}", target=f"version {pk}")
                self.message_user(request, f"Version {pk}: {action} done.")
            except HearthError as exc:
                self.message_user(request, f"Version {pk}: {exc}", level="error")

    @admin.action(
        description="Promote (serve) / roll back to the selected version", permissions=["model_change"]
    )
    def promote(self, request, queryset):
        """Serve the first selected version the gate passed (one is served at a time). A version the gate
        kept is refused here: it is served only from its promote page, with a reason."""
        kept = [
            v
            for v in queryset.order_by("pk")
            if v.gate_passed is not True and v.status != ModelVersion.Status.PROMOTED
        ]
        for version in kept:
            self.message_user(
                request,
                format_html(
                    "Version {}: not promoted — the promotion gate kept it. To serve it anyway, give a reason on "
                    '<a href="{}">its promote page</a>.',
                    version.pk,
                    reverse("admin:trainer_modelversion_action", args=[version.pk, "promote"]),
                ),
                level="warning",
            )
        self._each(request, queryset.exclude(pk__in=[v.pk for v in kept]).order_by("pk")[:1], "promote")

    @admin.action(
        description="Retire the selected versions (the base model is served)", permissions=["model_change"]
    )
    def retire(self, request, queryset):
        self._each(request, queryset, "retire")

    @admin.action(description="Delete the selected versions and their files", permissions=["model_delete"])
    def delete_versions(self, request, queryset):
        self._each(request, queryset, "delete")


@admin.register(EvaluationReport)
class EvaluationReportAdmin(ShownNotSavedMixin, ReportComparisonMixin, admin.ModelAdmin):
    """Reports come from evaluation runs (model_evaluate): shown, deleted from the list, never typed in."""

    list_display = ("id", "dataset", "version", "status", "mode", "created", "verdict")
    list_filter = ("status", "mode")
    readonly_fields = ReadOnlyLogMixin.readonly_fields + (
        "dataset",
        "version",
        "mode",
        "comparison",
        "metrics_view",
    )
    fieldsets = (
        (None, {"fields": ("status", "status_reason", "dataset", "version", "mode", "created_at")}),
        (None, {"fields": ("comparison",)}),
        ("All metrics", {"classes": ("collapse",), "fields": ("metrics_view",)}),
        ("Log", {"classes": ("collapse",), "fields": ("log", "updated_at")}),
    )
    created = when_column("created_at", "created")
    metrics_view = structured_field("metrics", "metrics")

    @admin.display(description="decision")
    def verdict(self, obj):
        """The gate's first sentence up to its colon ("Promoted", "Kept"); the page has the rest."""
        return obj.decision.split(":", 1)[0] if obj.decision else "–"


@admin.register(Notification)
class NotificationAdmin(HearthTitlesMixin, admin.ModelAdmin):
    """The full list (filter, delete); each admin reads and marks notifications in their inbox. The
    inbox needs the view permission: marking read changes only the reader's own read state."""

    list_display = ("created", "level", "title", "emailed")
    list_filter = ("level",)
    readonly_fields = ("created_at", "level", "title", "body", "emailed")
    created = when_column("created_at", "created")

    def has_add_permission(self, request):
        return False  # notifications come from the jobs (appliance.notifications.notify)

    def get_urls(self):
        from webui import views

        return (
            _admin_urls(
                self,
                [
                    ("inbox/", views.inbox_view, "inbox", "view"),
                    ("inbox/read-all/", views.inbox_read_all_view, "read_all", "view"),
                    ("<int:pk>/read/", views.inbox_read_view, "read", "view"),
                ],
            )
            + super().get_urls()
        )


_stock_each_context = admin.site.each_context


def _each_context_with_inbox(request):
    """Every admin page's context plus the signed-in admin's unread count (the header badge)."""
    from appliance.notifications import notifications_unread_count

    context = _stock_each_context(request)
    user = getattr(request, "user", None)
    if (
        user is not None
        and user.is_active
        and user.is_staff
        and model_permitted(request, Notification._meta, "view")
    ):
        context["hearth_unread"] = notifications_unread_count(user=user)
    return context


admin.site.each_context = _each_context_with_inbox


@admin.register(ApiToken)
class ApiTokenAdmin(HearthTitlesMixin, ModelPermissionsMixin, admin.ModelAdmin):
    """Tokens are made by "Create a token" (shown once, the add permission) and end by "Revoke" (the
    change permission); a superuser sees every user's, a staff user only their own."""

    list_display = ("prefix", "user", "name", "state", "rate_limit", "created", "last_used")
    created = when_column("created_at", "created", day=True)
    last_used = when_column("last_used_at", "last used")

    list_filter = ("revoked_at",)
    search_fields = ("user__username", "name", "prefix")
    exclude = ("digest",)
    actions = ["revoke"]

    def object_title(self, obj) -> str:
        return f"API token {obj.prefix}…"

    @admin.display(description="state", ordering="revoked_at")
    def state(self, obj):
        """Revoked (when), expired (when), or active (until when): one column, one line."""
        if obj.revoked_at:
            return format_html("revoked {}", when(obj.revoked_at, day=True))
        if obj.expires_at is None:
            return "active, never expires"
        if obj.expires_at <= timezone.now():
            return format_html("expired {}", when(obj.expires_at, day=True))
        return format_html("active until {}", when(obj.expires_at, day=True))

    @admin.display(description="per min", ordering="rate_limit_per_minute")
    def rate_limit(self, obj):
        return "default" if obj.rate_limit_per_minute is None else count(obj.rate_limit_per_minute)

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("user")
        return qs if request.user.is_superuser else qs.filter(user=request.user)

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) and (
            obj is None or request.user.is_superuser or obj.user_id == request.user.pk
        )

    def has_add_permission(self, request):
        return False  # a token is created by token_create_view, which shows it once

    def has_change_permission(self, request, obj=None):
        return False

    def get_urls(self):
        from webui import views

        return _admin_urls(self, [("new/", views.token_create_view, "new", "add")]) + super().get_urls()

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a token ends by being revoked, which is audited
        return actions

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Nor a Delete button on its page: revoking (from the list) is the way a token ends.
        return super().change_view(
            request, object_id, form_url, {"show_delete": False, **(extra_context or {})}
        )

    @admin.action(description="Revoke the selected tokens", permissions=["model_change"])
    def revoke(self, request, queryset):
        from inference.auth import auth_cache_ttl, token_revoke

        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token=token)
            request_audit(
                request, action="token.revoke", target=f"token {token.prefix}", detail=str(token.user)
            )
        wait = auth_cache_ttl()  # what the other web processes really wait, the setting capped
        self.message_user(
            request,
            f"Revoked; IDEs using them get 401 from now on (within {wait:g} s on the other web processes)."
            if wait
            else "Revoked; IDEs using them get 401 from now on.",
        )


@admin.register(AuditEntry)
class AuditEntryAdmin(HearthTitlesMixin, admin.ModelAdmin):
    """The audit log: browsable and filterable, never editable."""

    list_display = ("when", "actor", "action", "target", "detail", "address")
    list_display_links = ("when",)
    when = when_column("at", "at")

    list_filter = ("action", "actor", "at")
    search_fields = ("actor", "action", "target", "detail", "ip")
    date_hierarchy = "at"

    @admin.display(description="IP address", ordering="ip")
    def address(self, obj):
        """Whole, on one line (an IPv6 address too): the list never cuts it."""
        return format_html('<span class="hearth-ip">{}</span>', obj.ip) if obj.ip else "–"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# ---------------------------------------------------------------- serving (stage 6) and telemetry (stage 7)

from inference.models import (  # serving's rows, registered after the pipeline's
    BlockedCode,
    CodeSnapshot,
    CompletionEvent,
    CompletionRecord,
    FilterCount,
    FlowLog,
    ServingPolicy,
)


class ReadOnlyAdmin(HearthTitlesMixin, admin.ModelAdmin):
    """Rows written by the API only: the admin reads them (and may delete them)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ServingPolicy)
class ServingPolicyAdmin(HearthTitlesMixin, admin.ModelAdmin):
    form = ServingPolicyForm  # the Policies page's rules on the stock change page too
    list_display = (
        "__str__",
        "telemetry_enabled",
        "telemetry_content",
        "flow_logs_enabled",
        "retention_days",
        "updated_at",
    )

    def has_add_permission(self, request):
        return not ServingPolicy.objects.exists()

    def get_urls(self):
        from webui import views

        # Viewing needs "view"; the view itself also asks "change" of a POST.
        return (
            _admin_urls(self, [("policies/", views.policies_view, "policies", "view")]) + super().get_urls()
        )

    def changelist_view(self, request, extra_context=None):
        """The one policy row is edited on the Policies page, with the dataset exclusion beside it."""
        from django.shortcuts import redirect

        return redirect(reverse("admin:inference_servingpolicy_policies"))

    def save_model(self, request, obj, form, change):
        from inference.policy import serving_rules_clear

        super().save_model(request, obj, form, change)
        serving_rules_clear()
        request_audit(
            request,
            action="policy.change",
            target=str(obj),
            detail=", ".join(form.changed_data) or "saved unchanged",
        )


@admin.register(BlockedCode)
class BlockedCodeAdmin(HearthTitlesMixin, admin.ModelAdmin):
    list_display = ("name", "created", "size")
    search_fields = ("name",)
    created = when_column("created_at", "added")

    @admin.display(description="characters")
    def size(self, obj):
        return count(len(obj.text))


@admin.register(CompletionRecord)
class CompletionRecordAdmin(ReadOnlyAdmin):
    list_display = ("created", "user", "dialect", "model", "language", "latency", "outcome", "filters_used")
    list_filter = ("dialect", "model", "language", "outcome")
    search_fields = ("completion_id",)
    exclude = ("filters",)
    readonly_fields = ("filters_used",)
    created = when_column("created_at", "at")

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj):
        return f"{obj.latency_ms:,.0f} ms"

    @admin.display(description="filters")
    def filters_used(self, obj):
        return ", ".join(obj.filters) if obj.filters else "–"

    def get_urls(self):
        """The usage page (figures per language, model and filter); the list links to it."""
        from webui.usage import usage_view

        return _admin_urls(self, [("usage/", usage_view, "usage", "view")]) + super().get_urls()


@admin.register(CompletionEvent)
class CompletionEventAdmin(ReadOnlyAdmin):
    list_display = ("created", "user", "kind", "completion_id", "choice_index")
    list_filter = ("kind",)
    exclude = ("payload",)
    readonly_fields = ("payload_view",)
    created = when_column("created_at", "at")
    payload_view = structured_field("payload", "payload")


@admin.register(CodeSnapshot)
class CodeSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("created", "user", "completion_id", "file_path", "language", "elapsed")
    created = when_column("created_at", "at")

    @admin.display(description="after", ordering="elapsed_s")
    def elapsed(self, obj):
        return f"{count(obj.elapsed_s)} s"

    @admin.display(description="file", ordering="filepath")
    def file_path(self, obj):
        return breakable(obj.filepath)


@admin.register(FilterCount)
class FilterCountAdmin(ReadOnlyAdmin):
    list_display = ("day", "name", "times")
    list_filter = ("name",)
    times = count_column("count", "count")


@admin.register(FlowLog)
class FlowLogAdmin(ReadOnlyAdmin):
    list_display = ("created", "user", "path", "status_code", "latency")
    list_filter = ("status_code", "path")
    exclude = ("steps",)
    readonly_fields = ("steps_view",)
    created = when_column("created_at", "at")
    steps_view = structured_field("steps", "steps")

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj):
        return f"{obj.latency_ms:,.0f} ms"


# ---------------------------------------------------------------- django-q2's own pages, read-only


class _QueueReadOnly(HearthTitlesMixin):
    """django-q2's pages as a record only: a schedule or a queued task names any importable function,
    so adding, changing or resubmitting one from the browser would run code Hearth did not ship.
    Hearth's schedules come from its migrations and services, its jobs from its own actions (Retry)."""

    actions = ()  # no "Resubmit"; "Delete selected" stays where deleting is allowed

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ScheduleAdmin(_QueueReadOnly, q_admin.ScheduleAdmin):
    def has_delete_permission(self, request, obj=None):
        return False  # Hearth's own schedules (mirror sync, watchdog) would stop without a word


class QueueAdmin(_QueueReadOnly, q_admin.QueueAdmin):
    def has_delete_permission(self, request, obj=None):
        return False  # a dropped job leaves its row waiting; cancel it through its row


class SuccessAdmin(_QueueReadOnly, q_admin.TaskAdmin):
    """Finished jobs: read, or deleted as old history."""


class FailureAdmin(_QueueReadOnly, q_admin.FailAdmin):
    """Failed jobs: read, or deleted as old history; the row whose job failed is retried from its page."""


for _model, _admin in (
    (Schedule, ScheduleAdmin),
    (OrmQ, QueueAdmin),
    (Success, SuccessAdmin),
    (Failure, FailureAdmin),
):
    if admin.site.is_registered(_model):  # OrmQ only with the ORM broker
        admin.site.unregister(_model)
        admin.site.register(_model, _admin)


# ---------------------------------------------------------------- users


class DirectoryAccountAdmin(HearthTitlesMixin, admin.ModelAdmin):
    """Users the directory (LDAP) made, as a record: a sign-in or the periodic check writes them."""

    list_display = ("user", "entry", "created", "checked", "suspended", "suspended_reason")
    search_fields = ("user__username", "dn")
    created = when_column("created_at", "created")
    checked = when_column("checked_at", "checked")
    suspended = when_column("suspended_at", "suspended")

    def object_title(self, obj) -> str:
        return f"Directory account {obj.user}"

    @admin.display(description="DN", ordering="dn")
    def entry(self, obj):
        return breakable(obj.dn, ",")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the periodic check suspends and restores; the user is deleted as a user


class HearthUserAdmin(HearthTitlesMixin, UserAdmin):
    def object_title(self, obj) -> str:
        return f"User {obj.get_username()}"


class HearthGroupAdmin(HearthTitlesMixin, GroupAdmin):
    def object_title(self, obj) -> str:
        return f"Group {obj.name}"


register_replacing(DirectoryAccount, DirectoryAccountAdmin)
register_replacing(get_user_model(), HearthUserAdmin)
register_replacing(Group, HearthGroupAdmin)
