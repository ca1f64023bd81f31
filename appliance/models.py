from django.conf import settings
from django.db import models


class Notification(models.Model):
    """An in-app message to admins (run finished, failed, model promoted); also emailed if configured."""

    class Level(models.TextChoices):
        INFO = "info"
        SUCCESS = "success"
        ERROR = "error"

    created_at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.INFO)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    emailed = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class NotificationRead(models.Model):
    """One user has read one notification: read state is per user (each admin has their own inbox)."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="reads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    read_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notification", "user"], name="notification_read_once")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.notification_id}"


class LoginFailure(models.Model):
    """One failed admin login, by client address: enough of them in a window lock that address out."""

    address = models.GenericIPAddressField(db_index=True)
    username = models.CharField(max_length=150, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.address} {self.username!r} at {self.at:%Y-%m-%d %H:%M:%S}"


class AuditEntry(models.Model):
    """One admin action, appended and never changed: who, when, what, on which row, from where."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, blank=True, help_text="User name; empty for the system.")
    action = models.CharField(
        max_length=64, db_index=True, help_text="For example model.promote, token.create."
    )
    target = models.CharField(
        max_length=200, blank=True, help_text="The row acted on, for example version 3."
    )
    detail = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True, help_text="Client address of the request.")

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor or 'system'} {self.action} {self.target}"


class DirectoryAccount(models.Model):
    """A user made from the organization's directory (LDAP) at their first sign-in. Only these users
    are ever signed in through the directory: a directory user whose name matches a local account is
    refused, so nobody takes over a local account by creating a look-alike name in the directory."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="directory_account"
    )
    dn = models.CharField("DN", max_length=1024, help_text="The user's entry, as last found.")
    created_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField(
        null=True, blank=True, help_text="When a sign-in or the periodic check last found the entry."
    )
    suspended_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When Hearth deactivated the user because the directory no longer lists them as staff "
        "(or at all); cleared, and the user active again, once it does.",
    )
    suspended_reason = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id} ({self.dn})"
