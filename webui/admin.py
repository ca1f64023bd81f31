"""The admin pages: every pipeline row visible in a browser, read-mostly, with the stage logs."""

from django.contrib import admin

from inference.models import ApiToken
from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion, ProgressPoint, Repository, TrainingRun

admin.site.site_header = "Hearth"
admin.site.site_title = "Hearth admin"
admin.site.index_title = "Private code completion"


class ReadOnlyLogMixin:
    readonly_fields = ("status", "status_reason", "log", "created_at", "updated_at")


@admin.register(Repository)
class RepositoryAdmin(ReadOnlyLogMixin, admin.ModelAdmin):
    list_display = ("name", "status", "default_branch", "head_sha", "last_synced_at")
    search_fields = ("name", "source")
    readonly_fields = ReadOnlyLogMixin.readonly_fields + ("mirror_path", "head_sha", "last_synced_at")


@admin.register(BaseModel)
class BaseModelAdmin(ReadOnlyLogMixin, admin.ModelAdmin):
    list_display = ("slug", "display_name", "status", "architecture", "fim_format", "can_infill")
    readonly_fields = ReadOnlyLogMixin.readonly_fields + ("manifest",)


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyLogMixin, admin.ModelAdmin):
    list_display = ("id", "status", "train_files", "heldout_files", "train_bytes", "created_at")
    readonly_fields = ReadOnlyLogMixin.readonly_fields + ("commits", "manifest", "report", "path")


class ProgressInline(admin.TabularInline):
    model = ProgressPoint
    extra = 0
    can_delete = False
    readonly_fields = ("at", "step", "total_steps", "loss", "eval_loss", "tokens_per_s", "eta_s", "peak_memory_mb")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyLogMixin, admin.ModelAdmin):
    list_display = ("id", "base", "dataset", "status", "method", "step", "total_steps", "attempts", "created_at")
    list_filter = ("status", "method")
    readonly_fields = ReadOnlyLogMixin.readonly_fields + (
        "method", "device", "step", "total_steps", "attempts", "heartbeat_at", "summary", "settings", "path",
        "adapter_path",
    )
    inlines = [ProgressInline]
    actions = ["cancel_runs"]

    @admin.action(description="Cancel the selected runs")
    def cancel_runs(self, request, queryset):
        from appliance.errors import HearthError
        from trainer.training.services import training_run_cancel

        for run in queryset:
            try:
                training_run_cancel(run=run)
            except HearthError as exc:
                self.message_user(request, str(exc), level="warning")


class ReportInline(admin.StackedInline):
    model = EvaluationReport
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "mode", "metrics", "decision")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyLogMixin, admin.ModelAdmin):
    list_display = ("id", "base", "run", "status", "fim_format", "promoted_at")
    list_filter = ("status",)
    readonly_fields = ReadOnlyLogMixin.readonly_fields + ("gguf_path", "gguf_sha256", "manifest", "promoted_at")
    inlines = [ReportInline]


@admin.register(EvaluationReport)
class EvaluationReportAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "version", "mode", "created_at", "decision")
    readonly_fields = ("created_at", "mode", "metrics", "decision")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = ("prefix", "digest", "created_at", "last_used_at")
    search_fields = ("user__username", "name", "prefix")
