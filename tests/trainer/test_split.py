"""The held-out split: the files changed most recently where a repository's history tells them
apart, a fixed share by hash where it cannot, near-duplicate clusters whole on one side, and the
rule named in the report, on the dataset page and in git's own record of when files changed."""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from appliance.errors import DatasetError
from tests.conftest import CODE_FILES, GIT_ENV, git_repo_make, stdlib_files


def _stdlib(name: str) -> str:
    return (Path(sysconfig.get_paths()["stdlib"]) / name).read_text()


def _git(path: Path, *args: str, when: str = "") -> None:
    """git with the given date (ISO) as author and committer date."""
    dates = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when} if when else {}
    subprocess.run(["git", *args], cwd=path, env={**os.environ, **GIT_ENV, **dates}, check=True)


def _commit(path: Path, when: str, files: dict[str, str]) -> None:
    for rel, content in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", f"change of {when}", when=when)


def _history_repo(path: Path, commits: list[tuple[str, dict[str, str]]]) -> Path:
    """A repository whose commits carry the given dates."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    for when, files in commits:
        _commit(path, when, files)
    return path


def _build(repos: list[Path], **options):
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register

    registered = [repository_register(source=str(p), name=p.name) for p in repos]
    return dataset_build(repositories=registered, options=DatasetOptions(**options))


def _sides(dataset) -> dict[str, str]:
    from trainer.models.datasets import DatasetFile

    rows = DatasetFile.objects.filter(dataset=dataset).exclude(split="dropped")
    return {f"{repo}:{path}": split for repo, path, split in rows.values_list("repo", "path", "split")}


JAN, MAR, JUN = "2024-01-01T12:00:00+00:00", "2024-03-01T12:00:00+00:00", "2024-06-01T12:00:00+00:00"


def _grown_repo(path: Path, january: dict[str, str] | None = None) -> Path:
    """Standard-library modules committed in January, one added in March, one changed in June."""
    textwrap = stdlib_files(["textwrap.py"])["src/textwrap.py"]
    return _history_repo(
        path,
        [
            (JAN, {**stdlib_files(CODE_FILES), **(january or {})}),
            (MAR, {"src/calendar.py": _stdlib("calendar.py")}),
            (JUN, {"src/textwrap.py": textwrap + "\n\ndef later():\n    return 'june'\n"}),
        ],
    )


@pytest.mark.django_db
def test_history_holds_out_the_newest_files(tmp_path, client, django_user_model):
    dataset = _build([_grown_repo(tmp_path / "grown")], heldout_percent=10)
    sides, report = _sides(dataset), dataset.report
    assert 15 <= report["kept_files"] <= 24  # so 10% is two files
    held = sorted(k for k, side in sides.items() if side == "heldout")
    assert held == ["grown:src/calendar.py", "grown:src/textwrap.py"]
    assert report["split"]["method"] == "recent"
    assert report["split"]["by_repo"]["grown"] == {"method": "recent", "heldout_since": "2024-03-01"}
    assert dataset.manifest["split"]["method"] == "recent"

    admin = django_user_model.objects.create_superuser("admin", "admin@hearth.invalid", "pw")
    client.force_login(admin)
    html = client.get(f"/admin/trainer/dataset/{dataset.pk}/change/").content.decode()
    assert "the 10% of files changed most recently (since 2024-03-01)" in html


@pytest.mark.django_db
def test_one_commit_keeps_the_hash_split(tmp_path):
    from trainer.datasets.split import split_score

    dataset = _build([git_repo_make(tmp_path / "flat", stdlib_files(CODE_FILES))], heldout_percent=20)
    split = dataset.report["split"]
    assert split == {
        "method": "hash",
        "percent": 20,
        "by_repo": {"flat": {"method": "hash", "heldout_since": None, "reason": "one-commit"}},
    }
    for key, side in _sides(dataset).items():
        repo, _, path = key.partition(":")
        assert (side == "heldout") == (split_score(repo, path) % 100 < 20), key

    from webui.dataset_report import dataset_report_read

    rule = dataset_report_read(dataset.report).split_rule
    assert rule == "Held out: a fixed 20% of files chosen by hash (the repository has one commit)."


@pytest.mark.django_db
def test_a_near_duplicate_of_a_newest_file_is_held_out_with_it(tmp_path):
    """The June change makes textwrap's cluster the newest: its January near-copy in the same
    repository, and one in another repository with a single commit, are held out with it."""
    textwrap = stdlib_files(["textwrap.py"])["src/textwrap.py"]
    near, other = (textwrap.replace("def dedent", f"def dedent_{n}") for n in ("copy", "other"))
    grown = _grown_repo(tmp_path / "grown", january={"old/textwrap_copy.py": near})
    others = stdlib_files(["dataclasses.py", "contextlib.py", "functools.py", "operator.py"])
    copies = git_repo_make(tmp_path / "copies", {**others, "lib/textwrap_copy.py": other})
    dataset = _build([grown, copies], heldout_percent=10, near_duplicates="keep", max_duplicate_ratio=0.9)
    sides = _sides(dataset)
    assert sides["grown:src/textwrap.py"] == "heldout"
    assert sides["grown:old/textwrap_copy.py"] == "heldout"
    assert sides["copies:lib/textwrap_copy.py"] == "heldout"
    assert sides["grown:src/calendar.py"] == "train"  # the cluster's two files in grown fill its 10%
    assert dataset.report["duplicates"]["clusters_split_together"] >= 1
    split = dataset.report["split"]
    assert split["method"] == "mixed"
    assert split["by_repo"]["copies"]["method"] == "hash" and split["by_repo"]["grown"]["method"] == "recent"

    from webui.dataset_report import dataset_report_read

    rule = dataset_report_read(dataset.report).split_rule
    assert "changed most recently where the history tells them apart (grown since 2024-06-01)" in rule
    assert "copies: the repository has one commit" in rule


class _File:
    def __init__(self, repo: str, path: str, cluster: str = "") -> None:
        self.repo, self.path, self.cluster = repo, path, cluster or f"{repo}:{path}"


def _history(times: dict[str, str], commits: int = 3):
    from datetime import datetime

    from trainer.mirrors.git import History

    return History({p: int(datetime.fromisoformat(t).timestamp()) for p, t in times.items()}, commits)


def test_plan_takes_the_newest_clusters_whole_and_stops_at_the_share():
    from trainer.datasets.split import split_plan

    files = [_File("r", f"old{i}.py") for i in range(7)]
    files += [_File("r", "new.py"), _File("r", "twin.py", "r:old0.py"), _File("r", "mid.py")]
    times = {f"old{i}.py": JAN for i in range(7)} | {"new.py": JUN, "twin.py": MAR, "mid.py": "2024-02-01"}
    held, split = split_plan(files, {"r": _history(times)}, percent=30)
    # 30% of 10 is 3: new.py (June), then the cluster of twin.py (March) with its January root
    assert held == {"r:new.py", "r:old0.py"}
    assert split == {
        "method": "recent",
        "percent": 30,
        "by_repo": {"r": {"method": "recent", "heldout_since": "2024-03-01"}},
    }
    held, _ = split_plan(files, {"r": _history(times)}, percent=10)
    assert held == {"r:new.py"}


def test_plan_never_takes_a_repositorys_last_training_files():
    from trainer.datasets.split import split_plan

    files = [_File("r", "a.py"), _File("r", "b.py", "r:a.py"), _File("r", "c.py")]
    held, _ = split_plan(files, {"r": _history({"a.py": JAN, "b.py": JAN, "c.py": JUN})}, percent=50)
    assert held == {"r:c.py"}  # short of the share: the next cluster is all the training files left


def test_plan_falls_back_to_hash_and_says_why():
    from trainer.datasets.split import split_plan, split_score

    files = [_File("r", f"f{i}.py") for i in range(40)]
    same = _history({f.path: JAN for f in files})
    expected = {f.cluster for f in files if split_score("r", f.path) % 100 < 15}
    for history, option, reason in [
        (same, "auto", "same-time"),
        (_history({f.path: JAN for f in files}, commits=1), "auto", "one-commit"),
        (_history({f.path: f"2024-01-{i + 1:02d}" for i, f in enumerate(files[:28])}), "hash", "chosen"),
    ]:
        held, split = split_plan(files, {"r": history}, percent=15, option=option)
        assert held == expected and split["by_repo"]["r"] == {
            "method": "hash",
            "heldout_since": None,
            "reason": reason,
        }


def test_recent_split_refuses_a_repository_without_history():
    from trainer.datasets.split import split_plan

    files = [_File("flat", "a.py"), _File("flat", "b.py")]
    with pytest.raises(
        DatasetError, match="Repository flat cannot be split by recency: the repository has one commit"
    ):
        split_plan(
            files, {"flat": _history({"a.py": JAN, "b.py": JAN}, commits=1)}, percent=15, option="recent"
        )
    from trainer.datasets.builder import DatasetOptions

    with pytest.raises(DatasetError, match="split must be one of auto, recent, hash"):
        DatasetOptions(split="newest")


def test_history_read_dates_each_path_by_the_branch_that_brought_it(tmp_path):
    from trainer.mirrors.git import history_read

    repo = _history_repo(
        tmp_path / "h", [(JAN, {"a.py": "1\n", "odd name.py": "1\n"}), (MAR, {"a.py": "2\n"})]
    )
    _git(repo, "checkout", "-q", "-b", "side")
    _commit(repo, MAR, {"side.py": "s\n"})
    _git(repo, "checkout", "-q", "main")
    _git(repo, "merge", "-q", "--no-ff", "--no-edit", "side", when=JUN)
    history = history_read(repo, "main")
    assert history.commits == 3  # the first-parent line: January, March, the June merge
    assert history.changed == _history({"a.py": MAR, "odd name.py": JAN, "side.py": JUN}).changed
