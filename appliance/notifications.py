"""Tell admins what happened: a row they see in the admin, and an email through the configured SMTP."""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.core.mail import send_mail

from appliance.models import Notification

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
