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
    read = models.BooleanField(default=False)
    emailed = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class LoginFailure(models.Model):
    """One failed admin login, by client address: enough of them in a window lock that address out."""

    address = models.GenericIPAddressField(db_index=True)
    username = models.CharField(max_length=150, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.address} {self.username!r} at {self.at:%Y-%m-%d %H:%M:%S}"
