"""Shared set-up of the benchmarks: Django, an instance dir, a base model, and JSON-line output."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_setup(home: Path | None = None) -> Path:
    sys.path.insert(0, str(ROOT))
    home = home or Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    os.environ.setdefault("HEARTH_HOME", str(home))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return Path(os.environ["HEARTH_HOME"])


def emit(metric: str, value, goal: str, **extra) -> None:
    print(json.dumps({"metric": metric, "value": value, "goal": goal, **extra}), flush=True)


def code_files(limit_bytes: int) -> list[dict]:
    """Real code present on every machine: the installed Django package's sources."""
    import django

    root = Path(django.__file__).parent
    files, total = [], 0
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(errors="replace")
        files.append({"path": str(path.relative_to(root)), "text": text})
        total += len(text)
        if total >= limit_bytes:
            break
    return files
