"""The instance directory's own files, set up before Django: a private home and a generated secret key.

Called by settings.py with values it read from the environment (this module reads none itself).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_KEY_FILE = "secret_key"
# The key Hearth used before keys were generated: a credential stored under it is as good as plain text.
LEGACY_CONSTANT_KEYS = frozenset({"hearth-insecure-single-box-key"})
PRIVATE_UMASK = 0o077


def home_prepare(home: Path) -> None:
    """Create the instance root 0700; narrow an existing one we own (it holds keys and the database)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = home.stat()
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        home.chmod(0o700)


def secret_key_load(home: Path) -> str:
    """The instance's secret key, `home/secret_key` (0600), generated at first start.

    Two processes starting together both end up with the one that won the exclusive create.
    """
    home_prepare(home)
    path = home / SECRET_KEY_FILE
    for _ in range(50):
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            key = ""
        if key:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return key
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process is writing it: read it again
            import time

            time.sleep(0.05)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(64) + "\n")
    raise RuntimeError(f"{path} exists but stays empty: remove it to generate a new secret key")


def secret_key_weakness(key: str) -> str:
    """Why `key` is too weak to protect sessions and stored credentials, or '' if it is fine."""
    if key in LEGACY_CONSTANT_KEYS:
        return "it is the constant that older Hearth versions shipped in their source"
    if key.startswith("django-insecure"):
        return "it is a Django development key"
    if len(key) < 50:
        return f"it has {len(key)} characters (at least 50 needed)"
    if len(set(key)) < 5:
        return "it has fewer than 5 distinct characters"
    return ""
