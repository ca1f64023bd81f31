"""The training area of the admin: repositories (with their credential form and sync), base models,
datasets with their build report and files, and training runs with their live page."""

from django import forms
from django.contrib import admin
from django.template.loader import render_to_string
from django.urls import reverse

from appliance.audit import request_audit
from trainer.models import BaseModel, Dataset, Repository, TrainingRun
from trainer.models.datasets import DatasetFile
from webui.admin.base import ModelPermissionsMixin, ReadOnlyLogMixin, RetryMixin, admin_urls
from webui.admin_display import breakable, count, count_column, digest_short, structured_field, when_column
from webui.admin_site import HearthTitlesMixin, ShownNotSavedMixin
from webui.dataset_report import dataset_report_html


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
        return render_to_string(
            "admin/hearth/_dataset_files.html",
            {
                "files_url": f"{reverse('admin:trainer_datasetfile_changelist')}?dataset__id__exact={obj.pk}",
                "files_count": obj.files.count(),
                "dropped_count": obj.files.filter(split="dropped").count(),
            },
        )

    @admin.display(description="report")
    def report_view(self, obj):
        return dataset_report_html(obj.report)


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
            admin_urls(
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
