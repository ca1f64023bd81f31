"""Intranet credentials encrypted at rest (Fernet), and the URL surgery that keeps them out of rows.

The key comes from HEARTH_CREDENTIAL_KEY, or is derived from SECRET_KEY (generated per instance, never a
constant; a weak one is refused), so a database dump alone does not reveal a password. Plain values live only in memory for the length of one git call.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from django.conf import settings

from appliance.errors import MirrorError


def _fernet(*, storing: bool = False):
    from cryptography.fernet import Fernet

    from appliance.instance import secret_key_weakness

    key = settings.HEARTH_CREDENTIAL_KEY
    if not key:
        why = secret_key_weakness(settings.SECRET_KEY)
        if storing and why:
            raise MirrorError(
                f"Refusing to store a credential: SECRET_KEY is weak ({why}). Unset HEARTH_SECRET_KEY to use "
                "the generated HEARTH_HOME/secret_key, or set HEARTH_CREDENTIAL_KEY."
            )
        digest = hashlib.sha256(b"hearth-credentials:" + settings.SECRET_KEY.encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    try:
        return Fernet(key)
    except ValueError as exc:
        raise MirrorError(
            "HEARTH_CREDENTIAL_KEY is not a valid Fernet key (32 url-safe base64 bytes)."
        ) from exc


def credential_encrypt(plain: str) -> str:
    """Encrypt a password, token or SSH private key; the empty string stays empty."""
    return _fernet(storing=True).encrypt(plain.encode()).decode() if plain else ""


def credential_decrypt(token: str) -> str:
    from cryptography.fernet import InvalidToken

    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise MirrorError(
            "The stored credential cannot be decrypted: HEARTH_CREDENTIAL_KEY or SECRET_KEY changed since it "
            "was saved. Enter the credential again."
        ) from exc


@dataclass(frozen=True)
class GitAuth:
    """What one git call may use to authenticate; never printed (repr hides the secret)."""

    username: str = ""
    secret: str = ""

    def __repr__(self) -> str:
        return f"GitAuth(username={self.username!r}, secret={'***' if self.secret else ''!r})"

    @property
    def is_ssh_key(self) -> bool:
        return "PRIVATE KEY-----" in self.secret


def url_split_credentials(url: str) -> tuple[str, str, str]:
    """`https://user:pw@host/x` → (`https://host/x`, user, pw). SSH usernames (`ssh://git@host`) stay
    in the URL: they are not secret and ssh needs them."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, "", ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_pw, password = userinfo.partition(":")
    if parts.scheme == "ssh" and not has_pw:
        return url, "", ""
    clean = urlunsplit(
        (
            parts.scheme,
            hostport if parts.scheme != "ssh" else f"{user}@{hostport}",
            parts.path,
            parts.query,
            parts.fragment,
        )
    )
    return clean, unquote(user) if parts.scheme != "ssh" else "", unquote(password)
