"""Throttled admin logins: failures are counted per client address in the database (shared by every
web worker); an address with too many recent failures is refused before its password is checked."""

from __future__ import annotations

import logging
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.utils import timezone

logger = logging.getLogger(__name__)


def client_address(request) -> str:
    """The client's address, as the audit log records it (`appliance.audit.request_client_ip`: behind a
    proxy, X-Forwarded-For only from HEARTH_TRUSTED_PROXIES); 0.0.0.0 when there is none."""
    from appliance.audit import request_client_ip

    if request is None:
        return "0.0.0.0"
    return request_client_ip(request) or "0.0.0.0"


def _window_start():
    return timezone.now() - timedelta(seconds=settings.HEARTH_LOGIN_LOCKOUT_S)


def login_locked_out(address: str) -> bool:
    from appliance.models import LoginFailure

    recent = LoginFailure.objects.filter(address=address, at__gte=_window_start()).count()
    return recent >= settings.HEARTH_LOGIN_MAX_FAILURES


def login_failure_record(address: str, username: str) -> None:
    from appliance.models import LoginFailure

    LoginFailure.objects.filter(at__lt=_window_start()).delete()
    LoginFailure.objects.create(address=address, username=username[:150])
    logger.warning("failed admin login for %r from %s", username, address)


def login_failures_clear(address: str) -> None:
    from appliance.models import LoginFailure

    LoginFailure.objects.filter(address=address).delete()


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked_out": "Too many failed logins from your address. Try again in %(minutes)d minutes.",
    }

    def clean(self):
        address = client_address(self.request)
        if login_locked_out(address):
            raise forms.ValidationError(
                self.error_messages["locked_out"],
                code="locked_out",
                params={"minutes": max(1, settings.HEARTH_LOGIN_LOCKOUT_S // 60)},
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failure_record(address, self.cleaned_data.get("username") or "")
            raise
        login_failures_clear(address)
        return cleaned
