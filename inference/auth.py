"""Per-user bearer tokens: 256 random bits, shown once, SHA-256 at rest, found by a short prefix.

A token that authenticated is kept in this process for HEARTH_AUTH_CACHE_S seconds (2; never more than
AUTH_CACHE_MAX_S, 60, whatever the setting says), and so is an address's count of recent failures: a
keystroke then costs no database query before its completion. A revocation, an expiry, a disabled user
(an admin's, or the directory check's: appliance/directory.py) or a new rate limit made in another
process takes effect within that time; a revocation made in this process (the admin's revoke action,
token_revoke) at once.

A new token expires after HEARTH_TOKEN_DAYS days (90; 0: never) unless its creator names an expiry.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Case, F, Value, When
from django.utils import timezone

from appliance.errors import HearthError
from inference.models import ApiToken
from inference.writer import deferred

TOKEN_PREFIX = "hth_"
LOOKUP_CHARS = 12
# The longest a web process trusts what it cached about a token (its user disabled, its revocation).
AUTH_CACHE_MAX_S = 60.0


class AuthError(HearthError):
    def __init__(self, message: str, status: int = 401, *, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def token_create(
    *, username: str, name: str = "", expires_at: datetime | None = None, days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token for `username` (the user is created if new); return the row and the raw token.

    It expires at `expires_at` when given, else after `days` days when given, else after
    HEARTH_TOKEN_DAYS days; 0 days means never."""
    if expires_at is None:
        days = settings.HEARTH_TOKEN_DAYS if days is None else days
        if days < 0:
            raise ValueError(f"days must be 0 (never) or more, not {days}")
        expires_at = timezone.now() + timedelta(days=days) if days else None
    user, _ = get_user_model().objects.get_or_create(username=username)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=raw[:LOOKUP_CHARS], digest=ApiToken.hash(raw), expires_at=expires_at
    )
    return token, raw


_cache_lock = threading.Lock()
# digest → (monotonic time loaded, the row as loaded, this process's written count of its window then)
_tokens: dict[str, tuple[float, ApiToken, int]] = {}
_failures: dict[str, tuple[float, int]] = {}  # client address → (monotonic time counted, failures)


def auth_cache_clear() -> None:
    """Forget every token and failure count kept in this process (the next request asks the database)."""
    with _cache_lock:
        _tokens.clear()
        _failures.clear()
    with _pending_lock:  # what this process wrote is measured from the rows it loads next
        _written.clear()
        _scheduled.clear()


def auth_cache_ttl() -> float:
    """Seconds a cached token (or failure count) stays trusted: HEARTH_AUTH_CACHE_S, at most AUTH_CACHE_MAX_S."""
    return min(settings.HEARTH_AUTH_CACHE_S, AUTH_CACHE_MAX_S)


def _token_lookup(raw: str, digest: str) -> tuple[ApiToken, int] | None:
    """The token row for `raw` (from this process's cache while fresh) and how many of this process's
    requests in the row's rate window had been written when it was loaded."""
    ttl = auth_cache_ttl()
    now = time.monotonic()
    if ttl > 0:
        with _cache_lock:
            hit = _tokens.get(digest)
        if hit is not None and now - hit[0] < ttl:
            return hit[1], hit[2]
    written = _written_now()
    for token in ApiToken.objects.select_related("user").filter(prefix=raw[:LOOKUP_CHARS]):
        if hmac.compare_digest(token.digest, digest):
            base = written.get((token.pk, token.rate_window), 0)
            if ttl > 0:
                with _cache_lock:
                    _tokens[digest] = (now, token, base)
            return token, base
    return None


def token_authenticate(header: str | None) -> ApiToken:
    if not header or not header.startswith("Bearer "):
        raise AuthError("Missing bearer token: send 'Authorization: Bearer <token>'.")
    raw = header.removeprefix("Bearer ").strip()
    digest = ApiToken.hash(raw)
    found = _token_lookup(raw, digest)
    if found is None:
        raise AuthError("Invalid token.")
    token, written_at_load = found
    if token.revoked_at is not None:
        raise AuthError("This token has been revoked.", status=401)
    if token.expires_at is not None and token.expires_at <= timezone.now():
        raise AuthError("This token has expired.", status=401)
    if not token.user.is_active:
        raise AuthError("This token's user is disabled.", status=403)
    _rate_count(token, written_at_load)
    return token


API_FAILURE_USER = "(api token)"  # how failed API authentications are told apart from admin logins


def auth_failures_check(address: str) -> None:
    """429 for a client address that sent too many invalid tokens in the last minute, before any
    token lookup: guessing tokens is throttled like guessing admin passwords."""
    from datetime import timedelta

    from appliance.models import LoginFailure

    limit = settings.HEARTH_API_AUTH_MAX_FAILURES
    if not limit:
        return
    now, ttl = time.monotonic(), auth_cache_ttl()
    with _cache_lock:
        hit = _failures.get(address)
    if hit is not None and now - hit[0] < ttl:
        failures = hit[1]
    else:
        since = timezone.now() - timedelta(seconds=60)
        failures = LoginFailure.objects.filter(
            address=address, username=API_FAILURE_USER, at__gte=since
        ).count()
        if ttl > 0:
            with _cache_lock:
                _failures[address] = (now, failures)
    if failures >= limit:
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
    with _cache_lock:  # the next check from this address counts again, this failure included
        _failures.pop(address, None)


def token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token_forget(token.pk)


def token_forget(pk: int) -> None:
    """Drop token `pk` from this process's cache: its next request reads the row again."""
    with _cache_lock:
        for digest in [d for d, (_, t, _) in _tokens.items() if t.pk == pk]:
            del _tokens[digest]


_pending_lock = threading.Lock()
_pending: dict[tuple[int, int], int] = {}  # (token pk, minute) → requests not yet written
_scheduled: set[tuple[int, int]] = set()  # keys whose write is queued (it writes what is pending then)
_written: dict[tuple[int, int], int] = {}  # (token pk, minute) → requests this process has written


def _written_now() -> dict[tuple[int, int], int]:
    with _pending_lock:
        window = int(time.time() // 60)
        for key in [k for k in _written if k[1] < window - 1]:
            del _written[key]
        return dict(_written)


def _rate_count(token: ApiToken, written_at_load: int = 0) -> None:
    """Count this request in the token's one-minute window; 429 past its limit.

    The count is the row as loaded, plus this process's requests written since it was loaded (the
    row may come from the cache), plus those not yet written; the write (count + last_used_at) is
    deferred off the request path, and one write covers the token's requests of HEARTH_USAGE_FLUSH_S.
    Concurrent processes may each undercount by the requests of those last seconds, and by those
    another process made since the row was loaded.
    """
    window = int(time.time() // 60)
    key = (token.pk, window)
    with _pending_lock:
        _pending[key] = _pending.get(key, 0) + 1
        local = _pending[key] + _written.get(key, 0) - (written_at_load if token.rate_window == window else 0)
        schedule = key not in _scheduled
        _scheduled.add(key)
    count = (token.rate_count if token.rate_window == window else 0) + local

    def write() -> None:
        with _pending_lock:
            _scheduled.discard(key)  # a request from now on schedules the next write
            k = _pending.pop(key, 0)
        if k:
            ApiToken.objects.filter(pk=token.pk).update(
                last_used_at=timezone.now(),
                rate_count=Case(When(rate_window=window, then=F("rate_count") + k), default=Value(k)),
                rate_window=window,
            )
            with _pending_lock:
                _written[key] = _written.get(key, 0) + k

    if schedule:
        deferred(write, delay_s=settings.HEARTH_USAGE_FLUSH_S)
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
