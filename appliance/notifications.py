"""Tell admins what happened: a row they see in the admin, and an email through the configured SMTP."""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.core.mail import send_mail

from appliance.models import Notification, NotificationRead

logger = logging.getLogger(__name__)


def notify(*, title: str, body: str = "", level: str = Notification.Level.INFO) -> Notification:
    note = Notification.objects.create(title=title[:200], body=body, level=level)
    recipients = settings.HEARTH_NOTIFY_EMAILS
    if recipients:
        try:
            send_mail(f"[Hearth] {title}", body or title, settings.DEFAULT_FROM_EMAIL, recipients)
            Notification.objects.filter(pk=note.pk).update(emailed=True)
        except (smtplib.SMTPException, OSError) as exc:  # the in-app row is enough; never fail the job
            logger.warning("could not email notification %r: %s", title, exc)
    return note


def notifications_inbox(*, user, limit: int = 200) -> list[Notification]:
    """The newest notifications first, each with `is_read` for `user`."""
    read = set(NotificationRead.objects.filter(user=user).values_list("notification_id", flat=True))
    notes = list(Notification.objects.order_by("-created_at", "-id")[:limit])
    for note in notes:
        note.is_read = note.pk in read
    return notes


def notifications_unread_count(*, user) -> int:
    return Notification.objects.exclude(reads__user=user).count()


def notification_mark_read(*, notification: Notification, user) -> None:
    NotificationRead.objects.get_or_create(notification=notification, user=user)


def notifications_mark_all_read(*, user) -> int:
    """Mark every notification `user` has not read yet; return how many."""
    unread = Notification.objects.exclude(reads__user=user).values_list("id", flat=True)
    rows = [NotificationRead(notification_id=pk, user=user) for pk in unread]
    NotificationRead.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
