"""A model field for artifact paths, stored relative to the instance root (HEARTH_HOME).

Code reads and writes absolute paths as before; the database holds `models/version-00001/x.gguf`,
so an instance directory can move (a restore onto another host, a new mount point). A path outside
the instance (a base model imported in place, say) is stored as it is.
"""

from __future__ import annotations

from pathlib import Path

from django.db import models


class InstancePathField(models.CharField):
    description = "A filesystem path, stored relative to HEARTH_HOME when it lies below it"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 1000)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value, expression, connection):
        return path_absolute(value)

    def to_python(self, value):
        return path_absolute(super().to_python(value))

    def get_prep_value(self, value):
        return path_relative(super().get_prep_value(value))


def _home() -> Path:
    from appliance import paths

    return paths.home()


def path_absolute(value: str | None) -> str | None:
    """The absolute form of a stored path ("" stays "")."""
    if not value or Path(value).is_absolute():
        return value
    return str(_home() / value)


def path_relative(value: str | Path | None) -> str | None:
    """The stored form: relative to the instance root when below it, else unchanged."""
    if not value:
        return value
    path = Path(value)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(_home()))
    except ValueError:
        return str(path)


def glob_lines(text: str | None) -> list[str]:
    """Patterns typed one a line in an admin text field: blank lines and `#` comments dropped."""
    lines = (line.strip() for line in (text or "").splitlines())
    return [line for line in lines if line and not line.startswith("#")]
