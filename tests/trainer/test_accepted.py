"""Accepted completions as training data (trainer/datasets/accepted.py): which ones are used and how
(scrubbed, never an excluded path, never a held-out file's code, duplicates merged, a snapshot's
surviving text preferred), how a dataset carries them (accepted.jsonl, training only), that the
preview counts the tokens the run trains, and the refusals (no content collected, no provider)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trainer.datasets.accepted import (
    AcceptedProvider,
    FeedbackPolicy,
    HeldOut,
    accepted_prepare,
    accepted_used,
)
from trainer.datasets.secrets import SecretScrubber

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HELD_TEXT = (
    "def parse_header(line):\n"
    "    name, _, value = line.partition(':')\n"
    "    return name.strip().lower(), value.strip()\n"
    "\n"
    "def header_lines(text):\n"
    "    return [parse_header(x) for x in text.splitlines() if x]\n"
)
TOTAL_PREFIX = "def total(items):\n    result = 0\n    for item in items:\n        "
TOTAL_SUFFIX = "\n    return result\n"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def _record(n: int, **fields) -> dict:
    return {
        "id": f"cmpl-{n}",
        "created_at": (NOW - timedelta(days=1)).isoformat(),
        "prefix": f"def f{n}(x):\n    y = x * {n}\n    ",
        "middle": f"return y + {n}",
        "suffix": "\n",
        "snapshot": "",
        "filepath": f"/home/dev/proj/src/mod{n}.py",
        "language": "python",
        "user": "u1",
        "outcome": "ok",
        **fields,
    }


def _prepare(records, **kw):
    options = {
        "heldout": HeldOut([{"path": "src/held.py", "text": HELD_TEXT}]),
        "exclude_globs": ("generated/",),
        "policy_globs": ("**/private/**",),
        "languages": (),
        "since": NOW - timedelta(days=28),
        "scrubber": SecretScrubber(),
    }
    return accepted_prepare(records, **{**options, **kw})


def test_only_usable_records_become_samples_each_left_out_with_its_reason():
    records = [
        _record(1),
        _record(2, created_at=(NOW - timedelta(days=29)).isoformat()),  # older than the retention
        _record(3, middle=""),
        _record(4, middle="   \n"),
        _record(5, outcome="superseded"),
        _record(6, filepath="/home/dev/proj/generated/api.py"),  # the dataset's exclusion
        _record(7, filepath="file:///C:/Users/dev/private/keys.py"),  # the serving policy's exclusion
        _record(8, filepath="/home/dev/checkout/src/held.py"),  # a held-out file, wherever it lives
        # The code above the cursor is a held-out file's, under another name.
        _record(9, prefix=HELD_TEXT[:120], filepath="/home/dev/scratch.py"),
        # The accepted text is a held-out line (20 or more characters besides spaces).
        _record(10, prefix="    ", middle="return name.strip().lower(), value.strip()"),
        _record(11, language="go", filepath="/home/dev/proj/cmd/main.go"),
    ]
    result = _prepare(records)
    assert [s["middle"] for s in result.samples] == ["return y + 1", "return y + 11"]
    assert result.left_out == {
        "older than the retention": 1,
        "empty": 2,
        "not served": 1,
        "excluded": 2,
        "held-out file": 1,
        "held-out text": 2,
    }
    report = result.report()
    assert report["read"] == 11 and report["kept"] == 2
    assert report["by_language"] == {"go": 1, "python": 1} and report["developers"] == 1
    sample = result.samples[0]
    assert set(sample) == {"path", "language", "prefix", "middle", "suffix", "source"}  # no user, no id
    assert sample["source"] == "accepted"


def test_the_language_choice_applies():
    result = _prepare([_record(1), _record(2, language="go")], languages=("go",))
    assert [s["language"] for s in result.samples] == ["go"] and result.left_out == {"language off": 1}


def test_secrets_are_scrubbed_and_a_secret_across_the_cursor_drops_the_sample():
    records = [
        _record(1, prefix="# maintainer: jane.doe@acme-corp.com\ndef f():\n    token = "),
        _record(2, middle=f'"{GITHUB_TOKEN}"'),
        _record(3, prefix='def connect():\n    password = "', middle='Zq8hunter2-very-secret-Xk9"'),
    ]
    result = _prepare(records)
    text = json.dumps(result.samples)
    assert "jane.doe" not in text and GITHUB_TOKEN not in text and "hunter2" not in text
    assert "<EMAIL>" in result.samples[0]["prefix"] and result.samples[1]["middle"] == '"<SECRET:github-pat>"'
    assert result.left_out == {"secret at the cursor": 1}
    assert result.report()["secrets"] == {"Email Address": 1, "github-pat": 1}


def test_duplicates_merge_and_count_every_developer():
    one = _record(1, prefix=TOTAL_PREFIX, middle="result += item.price", suffix=TOTAL_SUFFIX)
    twin = {**one, "id": "cmpl-2", "user": "u2", "filepath": "/home/other/proj/src/mod1.py"}
    other = {**one, "id": "cmpl-3", "user": "u3", "middle": "result += item.cost"}
    result = _prepare([one, twin, other])
    assert [s["middle"] for s in result.samples] == ["result += item.price", "result += item.cost"]
    report = result.report()
    assert report["duplicates"] == 1 and report["developers"] == 3


def test_a_snapshot_decides_what_survived():
    accepted = "result += item.price"
    base = {"prefix": TOTAL_PREFIX, "middle": accepted, "suffix": TOTAL_SUFFIX}
    records = [
        # Edited after acceptance: the surviving line is trained on.
        _record(1, **base, snapshot=TOTAL_PREFIX + "result += item.price * item.qty" + TOTAL_SUFFIX),
        # Kept as accepted.
        _record(
            2,
            **{**base, "middle": "result += item.cost"},
            snapshot=TOTAL_PREFIX + "result += item.cost" + TOTAL_SUFFIX,
        ),
        # Deleted: the code before the cursor runs straight into the code after it.
        _record(3, **{**base, "middle": "result -= 1"}, snapshot=TOTAL_PREFIX + TOTAL_SUFFIX),
        # The code around it changed beyond recognition: the accepted text is used.
        _record(4, **{**base, "middle": "result *= 2"}, snapshot="class Other:\n    pass\n"),
    ]
    result = _prepare(records)
    assert [(s["middle"], s["source"]) for s in result.samples] == [
        ("result += item.price * item.qty", "snapshot"),
        ("result += item.cost", "snapshot"),
        ("result *= 2", "accepted"),
    ]
    assert result.left_out == {"deleted later": 1}
    assert result.report()["snapshots"] == {"used": 2, "edited": 1, "not_located": 1}


def test_a_held_out_file_is_recognised_by_path_and_by_lines():
    held = HeldOut([{"path": "src/held.py", "text": HELD_TEXT}])
    assert held.path_held("C:\\Users\\dev\\repo\\SRC\\held.py") and not held.path_held("/x/src/unheld.py")
    assert held.contains(["return name.strip().lower(), value.strip()"])
    assert held.contains(["def parse_header(line):", "    name, _, value = line.partition(':')"])
    # Whole lines in the same order, spaces ignored; two lines never next to each other do not match.
    assert held.contains(["def   parse_header(line) :"])
    assert not held.contains(["def parse_header(line):", "def header_lines(text):"])


def test_the_run_summary_sentence():
    assert accepted_used({"accepted_completions": 12, "accepted_developers": 3}) == (
        "used 12 accepted completions from 3 developers"
    )
    assert accepted_used({"accepted_completions": 1, "accepted_developers": 1}) == (
        "used 1 accepted completion from 1 developer"
    )
    assert accepted_used({}) == ""


# --- the dataset stage and the training samples -----------------------------------------------


def _provider(records: list[dict], *, content: bool = True) -> AcceptedProvider:
    return AcceptedProvider(
        policy=lambda: FeedbackPolicy(
            telemetry=True, content=content, retention_days=28, exclude_globs=("**/private/**",)
        ),
        collect=lambda since: list(records),
    )


@pytest.fixture
def fake_feedback(monkeypatch):
    """Install a provider of plain records in place of the serving side's (restored afterwards)."""
    from trainer.datasets import accepted

    def install(records: list[dict], **kw) -> None:
        monkeypatch.setattr(accepted, "_provider", _provider(records, **kw))

    return install


def _fresh(n: int, **fields) -> dict:
    return _record(n, created_at=datetime.now(UTC).isoformat(), **fields)


@pytest.mark.django_db
def test_the_dataset_carries_them_for_training_only(code_repo, fake_feedback):
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.tools.dataset_files import dataset_accepted_read

    fake_feedback([_fresh(1), _fresh(2, language="go", user="u2"), _fresh(3, filepath="/p/private/x.py")])
    repo = repository_register(source=str(code_repo))
    dataset = dataset_build(repositories=[repo], options=DatasetOptions(accepted_completions=True))
    folder = Path(dataset.path)
    samples = dataset_accepted_read(folder)
    assert [s["middle"] for s in samples] == ["return y + 1", "return y + 2"]
    assert "accepted.jsonl" in dataset.manifest["files"]
    accepted = dataset.report["accepted"]
    assert (accepted["kept"], accepted["developers"], accepted["left_out"]) == (2, 2, {"excluded": 1})
    assert "2 accepted completions from 2 developers (training only)" in dataset.log
    for split in ("train", "heldout"):  # never among the files, never evaluated on
        assert "return y + 1" not in (folder / f"{split}.jsonl").read_text()

    plain = dataset_build(repositories=[repo])
    assert dataset_accepted_read(Path(plain.path)) == [] and not plain.report["accepted"]


@pytest.mark.django_db
def test_the_build_refuses_without_a_provider_or_content(code_repo, fake_feedback, monkeypatch):
    from appliance.errors import DatasetError
    from trainer.datasets import accepted
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register

    repo = repository_register(source=str(code_repo))
    options = DatasetOptions(accepted_completions=True)
    fake_feedback([], content=False)
    with pytest.raises(DatasetError, match="does not collect content"):
        dataset_build(repositories=[repo], options=options)
    monkeypatch.setattr(accepted, "_provider", None)
    with pytest.raises(DatasetError, match="no provider of accepted completions is registered"):
        dataset_build(repositories=[repo], options=options)


@pytest.mark.django_db
def test_preview_counts_the_accepted_samples_the_run_trains(code_repo, micro_base, fake_feedback, tmp_path):
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.pipeline import dataset_preview
    from trainer.tools.dataset_files import dataset_accepted_read, dataset_files_read
    from trainer.training.config import LoraSettings
    from trainer.training.loop import train
    from trainer.training.modeling import method_choose

    fake_feedback([_fresh(n, prefix=TOTAL_PREFIX * n, suffix=TOTAL_SUFFIX) for n in range(1, 9)])
    repo = repository_register(source=str(code_repo))
    settings = LoraSettings(epochs=0.02, seq_len=64, grad_accum=1, eval_sequences=1, warmup_steps=0)
    options = DatasetOptions(accepted_completions=True)
    without = dataset_preview(repositories=[repo], base=micro_base, settings=settings)
    preview = dataset_preview(repositories=[repo], base=micro_base, settings=settings, options=options)
    assert preview.train_tokens > without.train_tokens and preview.report["accepted"]["kept"] == 8

    dataset = dataset_build(repositories=[repo], options=options)
    heldout = dataset_files_read(Path(dataset.path), "heldout")[:1]
    summary = train(
        hf_path=micro_base.hf_path,
        train_files=dataset_files_read(Path(dataset.path), "train"),
        heldout_files=heldout,
        accepted_files=dataset_accepted_read(Path(dataset.path)),
        settings=settings,
        method=method_choose("none"),
        out_dir=tmp_path / "run",
        log=lambda m: None,
    )
    assert summary["train_tokens"] == preview.train_tokens and summary["total_steps"] == preview.steps
    assert summary["accepted_completions"] == 8


def test_accepted_samples_are_fim_in_the_base_format_and_fit_the_window():
    import random

    from appliance.llm.fim import HEARTH
    from trainer.training.samples import accepted_samples

    fmt = HEARTH
    record = {"prefix": "x = 1\n" * 400 + "y = ", "middle": "2", "suffix": "\nz = 3\n" * 400}
    (psm,) = accepted_samples([record], fmt, random.Random(0), spm_rate=0.0, window_chars=300)
    (spm,) = accepted_samples([record], fmt, random.Random(0), spm_rate=1.0, window_chars=300)
    assert [p.text for p in psm if p.special] == [fmt.prefix, fmt.suffix, fmt.middle]
    assert [p.text for p in spm if p.special] == [fmt.prefix, fmt.suffix, fmt.middle]
    prefix, suffix, middle = psm[1].text, psm[3].text, psm[5].text
    assert middle == "2" and prefix.endswith("y = ") and prefix.startswith("x = 1")
    assert suffix.startswith("\nz = 3") and len(prefix) + len(suffix) + len(middle) <= 300
    (plain,) = accepted_samples([record], None, random.Random(0), spm_rate=0.5, window_chars=300)
    assert [p.special for p in plain] == [False] and plain[0].text.endswith("y = 2")


@pytest.mark.django_db
def test_the_command_refuses_while_content_is_not_collected():
    from django.core.management import CommandError, call_command

    from inference.models import ServingPolicy

    ServingPolicy.objects.update_or_create(
        pk=1, defaults={"telemetry_enabled": True, "telemetry_content": False}
    )
    with pytest.raises(CommandError, match="does not collect content"):
        call_command("training_start", "--accepted-completions", "--no-follow", stdout=io.StringIO())
