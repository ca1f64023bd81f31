"""Tokens expire by default (HEARTH_TOKEN_DAYS, 90 days; 0: never), whoever makes them: the service
the admin page and `manage.py token_create` share, and the command's own --days. A web process trusts
what it cached about a token for at most a minute, whatever HEARTH_AUTH_CACHE_S says."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from inference import auth
from inference.auth import AuthError, auth_cache_clear, token_authenticate, token_create
from inference.models import ApiToken


@pytest.fixture(autouse=True)
def _fresh_cache():
    auth_cache_clear()
    yield
    auth_cache_clear()


def _days_left(token: ApiToken) -> float:
    return (token.expires_at - timezone.now()) / timedelta(days=1)


def test_the_default_lifetime_is_90_days():
    from django.conf import settings

    assert settings.HEARTH_TOKEN_DAYS == 90


@pytest.mark.django_db
def test_a_new_token_expires_after_hearth_token_days_unless_told_otherwise(settings):
    settings.HEARTH_TOKEN_DAYS = 90
    token, raw = token_create(username="ann")
    assert 89.99 < _days_left(token) <= 90
    assert token_authenticate(f"Bearer {raw}").pk == token.pk

    assert 6.99 < _days_left(token_create(username="ann", days=7)[0]) <= 7
    assert token_create(username="ann", days=0)[0].expires_at is None
    chosen = timezone.now() + timedelta(days=400)
    assert token_create(username="ann", expires_at=chosen)[0].expires_at == chosen

    settings.HEARTH_TOKEN_DAYS = 0
    assert token_create(username="ann")[0].expires_at is None


@pytest.mark.django_db
def test_an_expired_token_is_refused(settings):
    settings.HEARTH_TOKEN_DAYS = 1
    token, raw = token_create(username="ann")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    auth_cache_clear()
    with pytest.raises(AuthError, match="expired"):
        token_authenticate(f"Bearer {raw}")


@pytest.mark.django_db
def test_token_create_command_days(settings):
    settings.HEARTH_TOKEN_DAYS = 90
    out = {"stdout": io.StringIO(), "stderr": io.StringIO()}

    def made(*args: str) -> ApiToken:
        call_command("token_create", "bob", *args, **out)
        return ApiToken.objects.filter(user__username="bob").latest("pk")

    assert 89.99 < _days_left(made()) <= 90
    assert 6.99 < _days_left(made("--days", "7")) <= 7
    assert made("--days", "0").expires_at is None
    assert timedelta(hours=11, minutes=59) < made("--expires-in", "12h").expires_at - timezone.now()
    assert made("--expires-in", "never").expires_at is None
    with pytest.raises(CommandError, match="--days"):
        call_command("token_create", "bob", "--days", "-1", **out)
    with pytest.raises(CommandError):
        call_command("token_create", "bob", "--days", "7", "--expires-in", "12h", **out)

    settings.HEARTH_TOKEN_DAYS = 0
    assert made().expires_at is None


@pytest.mark.django_db
def test_a_disabled_user_is_refused_within_a_minute_whatever_the_cache_setting(
    settings, monkeypatch, django_user_model
):
    settings.HEARTH_AUTH_CACHE_S = 3600  # an operator's too generous cache
    _, raw = token_create(username="dev")
    assert token_authenticate(f"Bearer {raw}")  # now cached in this process
    # Another process (the directory check, an admin's web worker) disables the user.
    django_user_model.objects.filter(username="dev").update(is_active=False)
    clock = auth.time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock + 61)
    with pytest.raises(AuthError, match="disabled") as refused:
        token_authenticate(f"Bearer {raw}")
    assert refused.value.status == 403
