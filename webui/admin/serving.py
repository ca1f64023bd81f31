"""The serving area of the admin: API tokens, the serving policy and blocked code, and the rows the
completion API writes (completion records and events, code snapshots, filter counts, flow logs)."""

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from appliance.audit import request_audit
from inference.models import (
    ApiToken,
    BlockedCode,
    CodeSnapshot,
    CompletionEvent,
    CompletionRecord,
    FilterCount,
    FlowLog,
    ServingPolicy,
)
from webui.admin.base import ModelPermissionsMixin, ReadOnlyAdmin, admin_urls
from webui.admin_display import breakable, count, count_column, structured_field, when, when_column
from webui.admin_site import HearthTitlesMixin
from webui.forms import ServingPolicyForm


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

        return admin_urls(self, [("new/", views.token_create_view, "new", "add")]) + super().get_urls()

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
        return admin_urls(self, [("policies/", views.policies_view, "policies", "view")]) + super().get_urls()

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

        return admin_urls(self, [("usage/", usage_view, "usage", "view")]) + super().get_urls()


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
