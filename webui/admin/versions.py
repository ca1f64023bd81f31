"""Model versions (promote, retire, delete, download their GGUF files) and the evaluation reports
that compare each with its base model, on the report's own page and inline on its version's."""

from django.contrib import admin
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from appliance.audit import request_audit
from trainer.models import EvaluationReport, ModelVersion
from webui.admin.base import ModelPermissionsMixin, ReadOnlyLogMixin, RetryMixin, admin_urls
from webui.admin_display import digest_short, structured_field, when_column
from webui.admin_site import ShownNotSavedMixin
from webui.reports import report_html


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
        from webui.canary import version_canary_view

        return (
            admin_urls(
                self,
                [
                    (
                        "<int:pk>/do/<str:action>/",
                        views.version_action_view,
                        "action",
                        views.version_action_permission,
                    ),
                    ("<int:pk>/download/<str:name>", views.version_download_view, "download", "view"),
                    ("<int:pk>/canary/", version_canary_view, "canary", "change"),
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
        now = {
            ModelVersion.Status.PROMOTED: "served to every developer"
            + (f" since {obj.promoted_at:%Y-%m-%d %H:%M} UTC" if obj.promoted_at else ""),
            ModelVersion.Status.CANDIDATE: self._canary_now(obj)
            if obj.is_canary
            else "a candidate, not served",
            ModelVersion.Status.RETIRED: "retired, not served",
        }.get(obj.status)
        return render_to_string(
            "admin/hearth/_version_decision.html",
            {
                "override_flag": override_flag(obj),
                "verdict": decision_html(report.decision) if report and report.decision else "",
                "now": now,
            },
        )

    @staticmethod
    def _canary_now(obj) -> str:
        """A canary's share and what its developers' acceptance says so far."""
        from inference.canary import canary_comparison

        _, comparison = canary_comparison(obj)
        return f"a canary: served to {obj.canary_percent}% of developers. {comparison.sentence}"

    @admin.display(description="actions")
    def lifecycle(self, obj):
        """A button per move the version can make now (promote or roll back, retire), then Delete."""
        against = "" if obj.gate_passed is True else " against the gate (needs a reason)"
        promote = (
            "Roll back to this version" if obj.status == ModelVersion.Status.RETIRED else "Promote (serve)"
        ) + against
        moves = [
            ("promote", promote, ModelVersion.Status.PROMOTED),
            ("retire", "Retire", ModelVersion.Status.RETIRED),
        ]
        buttons = [
            {"url": reverse("admin:trainer_modelversion_action", args=[obj.pk, action]), "label": label}
            for action, label, status in moves
            if obj.can_transition(status)
        ]
        if obj.status == ModelVersion.Status.CANDIDATE:
            label = (
                f"Canary: {obj.canary_percent}% of developers (compare, promote or roll back)"
                if obj.is_canary
                else "Try on a share of developers first"
            )
            buttons.insert(
                0, {"url": reverse("admin:trainer_modelversion_canary", args=[obj.pk]), "label": label}
            )
        delete_url = reverse("admin:trainer_modelversion_action", args=[obj.pk, "delete"])
        return render_to_string(
            "admin/hearth/_version_actions.html", {"buttons": buttons, "delete_url": delete_url}
        )

    @admin.display(description="files")
    def files(self, obj):
        from webui.views import version_files

        rows = version_files(obj)
        if not rows:
            return "No GGUF file on disk yet."
        files = [
            {
                "name": name,
                "url": reverse("admin:trainer_modelversion_download", args=[obj.pk, name]),
                "size_mb": f"{size / 1e6:,.1f}",
                "sha256": digest_short(sha, 16),
            }
            for name, sha, size in rows
        ]
        return render_to_string("admin/hearth/_version_files.html", {"files": files})

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
