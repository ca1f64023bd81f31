"""Per-user bearer tokens: 256 random bits, shown once, SHA-256 at rest, found by a short prefix."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Case, F, Value, When
from django.utils import timezone

from appliance.errors import HearthError
from inference.models import ApiToken
from inference.writer import deferred

TOKEN_PREFIX = "hth_"
LOOKUP_CHARS = 12


class AuthError(HearthError):
    def __init__(self, message: str, status: int = 401, *, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def token_create(
    *, username: str, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for `username` (the user is created if new); return the row and the raw token."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=raw[:LOOKUP_CHARS], digest=ApiToken.hash(raw), expires_at=expires_at
    )
    return token, raw


def token_authenticate(header: str | None) -> ApiToken:
    if not header or not header.startswith("Bearer "):
        raise AuthError("Missing bearer token: send 'Authorization: Bearer <token>'.")
    raw = header.removeprefix("Bearer ").strip()
    digest = ApiToken.hash(raw)
    for token in ApiToken.objects.select_related("user").filter(prefix=raw[:LOOKUP_CHARS]):
        if hmac.compare_digest(token.digest, digest):
            if token.revoked_at is not None:
                raise AuthError("This token has been revoked.", status=401)
            if token.expires_at is not None and token.expires_at <= timezone.now():
                raise AuthError("This token has expired.", status=401)
            if not token.user.is_active:
                raise AuthError("This token's user is disabled.", status=403)
            _rate_count(token)
            return token
    raise AuthError("Invalid token.")


API_FAILURE_USER = "(api token)"  # how failed API authentications are told apart from admin logins


def auth_failures_check(address: str) -> None:
    """429 for a client address that sent too many invalid tokens in the last minute, before any
    token lookup: guessing tokens is throttled like guessing admin passwords."""
    from datetime import timedelta

    from appliance.models import LoginFailure

    limit = settings.HEARTH_API_AUTH_MAX_FAILURES
    since = timezone.now() - timedelta(seconds=60)
    if (
        limit
        and LoginFailure.objects.filter(address=address, username=API_FAILURE_USER, at__gte=since).count()
        >= limit
    ):
        raise AuthError(
            f"Too many invalid tokens from {address} in the last minute; retry in 60 s.",
            status=429,
            retry_after=60,
        )


def auth_failure_record(address: str) -> None:
    from datetime import timedelta

    from appliance.models import LoginFailure

    LoginFailure.objects.filter(
        username=API_FAILURE_USER, at__lt=timezone.now() - timedelta(seconds=60)
    ).delete()
    LoginFailure.objects.create(address=address, username=API_FAILURE_USER)


def token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


_pending_lock = threading.Lock()
_pending: dict[tuple[int, int], int] = {}  # (token pk, minute) → requests not yet written


def _rate_count(token: ApiToken) -> None:
    """Count this request in the token's one-minute window; 429 past its limit.

    The count is the row as loaded plus this process's requests not yet written; the write
    (count + last_used_at) is deferred off the request path. Concurrent processes may each
    undercount by the requests of the last few tens of milliseconds.
    """
    window = int(time.time() // 60)
    key = (token.pk, window)
    with _pending_lock:
        _pending[key] = _pending.get(key, 0) + 1
        local = _pending[key]
    count = (token.rate_count if token.rate_window == window else 0) + local

    def write() -> None:
        with _pending_lock:
            k = _pending.pop(key, 0)
        if k:
            ApiToken.objects.filter(pk=token.pk).update(
                last_used_at=timezone.now(),
                rate_count=Case(When(rate_window=window, then=F("rate_count") + k), default=Value(k)),
                rate_window=window,
            )

    deferred(write)
    if token.rate_limit_per_minute == 0:  # an admin's way to block a token without revoking it
        raise AuthError(
            "This token is blocked (its rate limit is 0 requests per minute).", status=429, retry_after=60
        )
    # A token without a limit of its own gets the appliance's (HEARTH_RATE_LIMIT; 0 there means none).
    limit = (
        token.rate_limit_per_minute if token.rate_limit_per_minute is not None else settings.HEARTH_RATE_LIMIT
    )
    if limit and count > limit:
        retry = 60 - int(time.time()) % 60
        raise AuthError(
            f"Rate limit of {limit} requests per minute exceeded for this token; retry in {retry} s.",
            status=429,
            retry_after=retry,
        )
