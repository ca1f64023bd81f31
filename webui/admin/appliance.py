"""The appliance's own pages: notifications (the inbox and its header badge), the audit log,
django-q2's job pages as a read-only record, and users, groups and directory accounts."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.utils.html import format_html
from django_q import admin as q_admin  # its pages, registered before Hearth's, are replaced below
from django_q.models import Failure, OrmQ, Schedule, Success

from appliance.models import AuditEntry, DirectoryAccount, Notification
from webui.admin.base import admin_urls, model_permitted
from webui.admin_display import breakable, when_column
from webui.admin_site import HearthTitlesMixin, register_replacing


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
            admin_urls(
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
