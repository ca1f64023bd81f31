"""The secret shared by the web tier and the engine, so that only Hearth itself can call the engine.

Any process on the machine can reach the engine's port; without this, it could skip tokens, rate
limits, exclusions and response filters, or cancel another user's completion. The secret comes from
`HEARTH_ENGINE_SECRET` when set (an engine on another host needs the same value on both sides), else
from `engine_secret` in the instance directory, generated with mode 0600 on first use.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from django.conf import settings

from appliance import paths
from appliance.errors import HearthError

MIN_SECRET_CHARS = 32
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


_cache: dict[str, str] = {}  # secret file → its value: read once per process, not once per request


class EngineSecretError(HearthError):
    """The engine's shared secret is missing, too short or readable by others."""


def engine_secret() -> str:
    """The shared secret, generating the instance's secret file if there is none yet."""
    configured = settings.HEARTH_ENGINE_SECRET
    if configured:
        if len(configured) < MIN_SECRET_CHARS:
            raise EngineSecretError(
                f"HEARTH_ENGINE_SECRET must be at least {MIN_SECRET_CHARS} characters long."
            )
        return configured
    path = paths.engine_secret_file()
    if str(path) in _cache:
        return _cache[str(path)]
    if not path.exists():
        _generate(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise EngineSecretError(f"{path} is readable by other users (mode {mode:o}): run `chmod 600 {path}`.")
    value = path.read_text().strip()
    if len(value) < MIN_SECRET_CHARS:
        raise EngineSecretError(
            f"{path} holds no usable secret: delete it and restart Hearth to generate one."
        )
    _cache[str(path)] = value
    return value


def _generate(path: Path) -> None:
    """Write a fresh secret with mode 0600; a process that loses the race keeps the winner's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(partial, path)  # fails if another process created it first: readers never see half a file
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def engine_auth_headers() -> dict[str, str]:
    """The header that every call to the engine carries."""
    return {"Authorization": f"Bearer {engine_secret()}"}


def engine_secret_check(header: str | None) -> bool:
    """Whether an Authorization header carries the shared secret (constant-time comparison)."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), engine_secret().encode())


def engine_bind_check(host: str) -> None:
    """Refuse to expose the engine beyond loopback unless its secret was configured on purpose."""
    if host not in LOOPBACK_HOSTS and not settings.HEARTH_ENGINE_SECRET:
        raise EngineSecretError(
            f"The engine would listen on {host}, beyond loopback: set HEARTH_ENGINE_SECRET (at least "
            f"{MIN_SECRET_CHARS} characters, the same value for the web tier) or bind it to 127.0.0.1."
        )
    engine_secret()
