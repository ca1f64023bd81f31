"""What every area of Hearth's admin shares: the site set up in the admin's sections with the dashboard
on its index, the permission check behind each custom door (`model_permitted`, `admin_urls`), and the
mixins for rows a stage writes (read-only log fields, the Retry action)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.urls import path

from appliance.audit import request_audit
from webui.admin_site import HearthTitlesMixin, site_configure

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


class ReadOnlyAdmin(HearthTitlesMixin, admin.ModelAdmin):
    """Rows written by the API only: the admin reads them (and may delete them)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def admin_urls(model_admin, routes):
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
