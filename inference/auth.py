"""Per-user bearer tokens: 256 random bits, shown once, SHA-256 at rest, found by a short prefix."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

from django.contrib.auth import get_user_model
from django.utils import timezone

from appliance.errors import HearthError
from inference.models import ApiToken

TOKEN_PREFIX = "hth_"
LOOKUP_CHARS = 12


class AuthError(HearthError):
    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


def token_create(*, username: str, name: str = "", expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token for `username` (the user is created if new); return the row and the raw token."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=raw[:LOOKUP_CHARS], digest=ApiToken.hash(raw),
                                    expires_at=expires_at)
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
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
            return token
    raise AuthError("Invalid token.")


def token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
