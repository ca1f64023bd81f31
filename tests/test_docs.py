"""The docs keep up with the code: every HEARTH_* setting the code reads and every management command is
documented in README.md or docs/*.md, the README stays a five-minute read, and its docs/ links resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("appliance", "trainer", "inference", "webui")
README_MAX_LINES = 160

# settings.py reads HEARTH_<NAME> through _env("NAME", ...), _env_bool("NAME", ...), _env_list("NAME", ...).
SETTINGS_READ = re.compile(r"""\b_env(?:_bool|_list)?\(\s*["']([A-Z0-9_]+)["']""")
# Anywhere else in Python: os.environ.get("HEARTH_X"), os.getenv("HEARTH_X"), os.environ["HEARTH_X"] (not a write).
PYTHON_READ = re.compile(
    r"""os\.(?:environ\.get|getenv)\(\s*["'](HEARTH_[A-Z0-9_]+)["']"""
    r"""|os\.environ\[\s*["'](HEARTH_[A-Z0-9_]+)["']\s*\](?!\s*=[^=])"""
)
# Shell scripts: ${HEARTH_X:-default} or ${HEARTH_X-default}, a variable the caller may set.
SHELL_READ = re.compile(r"\$\{(HEARTH_[A-Z0-9_]+):?-")
DOCS_LINK = re.compile(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)")


def settings_read(source: str) -> set[str]:
    """The HEARTH_* names a settings module reads through its _env helpers."""
    return {f"HEARTH_{name}" for name in SETTINGS_READ.findall(source)}


def environment_read(source: str) -> set[str]:
    """The HEARTH_* names a Python module or a shell script reads straight from the environment."""
    names = {a or b for a, b in PYTHON_READ.findall(source)}
    return names | set(SHELL_READ.findall(source))


def settings_in_code() -> set[str]:
    names = settings_read((ROOT / "appliance" / "settings.py").read_text())
    for folder in (*PACKAGES, "packaging", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".sh"} and path.is_file() and path != Path(__file__).resolve():
                names |= environment_read(path.read_text(errors="replace"))
    return names


def commands_in_code() -> set[str]:
    return {
        path.stem
        for package in PACKAGES
        for path in (ROOT / package / "management" / "commands").glob("*.py")
        if path.stem != "__init__"
    }


def docs_text() -> str:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(path.read_text() for path in files if path.is_file())


def undocumented(names: set[str], text: str) -> list[str]:
    """The names that appear nowhere in text as a whole word (HEARTH_LDAP_URI does not cover HEARTH_LDAP)."""
    return sorted(
        name for name in names if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
    )


def commands_undocumented(commands: set[str], text: str) -> list[str]:
    """The commands that appear nowhere as one: after `manage.py ` or `hearth `, or opening a code span
    (a bare word such as "serve" or "web" in prose does not count)."""
    return sorted(
        name
        for name in commands
        if not re.search(rf"(?:manage\.py |hearth |`){re.escape(name)}(?![A-Za-z0-9_])", text)
    )


def broken_links(readme: str) -> list[str]:
    return sorted({link for link in DOCS_LINK.findall(readme) if not (ROOT / link).is_file()})


def test_rules_catch_a_planted_gap():
    """Each rule first runs on a planted violation, so a test that always passes cannot hide here."""
    planted_settings = 'X = _env("PLANTED_KNOB", "1")\nY = _env_bool("OTHER", False)\n'
    assert settings_read(planted_settings) == {"HEARTH_PLANTED_KNOB", "HEARTH_OTHER"}
    planted_code = (
        'a = os.environ.get("HEARTH_A")\nb = os.environ["HEARTH_B"]\nos.environ["HEARTH_C"] = "1"\n'
        "DIR=${HEARTH_D:-/tmp}\n"
    )
    assert environment_read(planted_code) == {"HEARTH_A", "HEARTH_B", "HEARTH_D"}
    text = "`HEARTH_PLANTED_KNOB_S` (5) and `blocked_code_add`"
    assert undocumented({"HEARTH_PLANTED_KNOB", "HEARTH_PLANTED_KNOB_S"}, text) == ["HEARTH_PLANTED_KNOB"]
    assert undocumented({"blocked_code", "blocked_code_add"}, text) == ["blocked_code"]
    assert commands_undocumented({"web", "blocked_code_add"}, "the web tier; `blocked_code_add`") == ["web"]
    assert "docs/no-such-file.md" in broken_links("see [ops](docs/no-such-file.md#install)")


def test_every_setting_is_documented():
    names = settings_in_code()
    assert len(names) > 50, "the settings scan found too little: has appliance/settings.py moved?"
    missing = undocumented(names, docs_text())
    assert not missing, f"HEARTH_* settings read by the code but documented nowhere: {missing}"


def test_every_management_command_is_documented():
    commands = commands_in_code()
    assert {"training_start", "token_create", "backup"} <= commands
    missing = commands_undocumented(commands, docs_text())
    assert not missing, f"management commands documented nowhere: {missing}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; detail belongs in docs/"


def test_readme_docs_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert DOCS_LINK.search(readme), "README.md links to no docs/ file"
    assert not broken_links(readme), f"README.md links to missing files: {broken_links(readme)}"
