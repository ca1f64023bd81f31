"""Accepted completions feed the next fine-tune: completions served and accepted through the real
API (Tabby's /v1/completions and /v1/events, Hearth's snapshots endpoint) on a live Hearth, collected
by inference/feedback.py, built into a dataset with the option on and trained on by the micro model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.django_db(transaction=True)

TINY = {
    "max_steps": 2,
    "seq_len": 64,
    "grad_accum": 1,
    "eval_every_steps": 100,
    "eval_sequences": 1,
    "warmup_steps": 0,
}
EMAIL = "jane.doe@acme-corp.com"


def _policy(**fields):
    from inference.models import ServingPolicy

    ServingPolicy.objects.update_or_create(pk=1, defaults=fields)


class Ide:
    """One developer's IDE: a token, completions asked for, events and snapshots sent."""

    def __init__(self, hearth: str, token: str):
        self.hearth, self.auth = hearth, {"Authorization": f"Bearer {token}"}

    def complete(self, filepath: str, prefix: str, suffix: str = "\n", language: str = "python") -> str:
        body = {"language": language, "segments": {"prefix": prefix, "suffix": suffix, "filepath": filepath}}
        r = requests.post(f"{self.hearth}/v1/completions", headers=self.auth, json=body, timeout=60)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["choices"][0]["text"].strip(), f"the micro model gave no text after {prefix[-40:]!r}"
        return answer["id"]

    def event(self, kind: str, cid: str) -> None:
        body = {"type": kind, "completion_id": cid, "choice_index": 0, "view_id": "v1"}
        assert requests.post(f"{self.hearth}/v1/events", headers=self.auth, json=body, timeout=10).ok

    def accept(self, *args, **kwargs) -> str:
        cid = self.complete(*args, **kwargs)
        self.event("view", cid)
        self.event("select", cid)
        return cid

    def snapshot(self, cid: str, filepath: str, text: str) -> None:
        body = {"completion_id": cid, "filepath": filepath, "text": text, "elapsed_s": 60}
        r = requests.post(f"{self.hearth}/v1/telemetry/snapshots", headers=self.auth, json=body, timeout=10)
        assert r.json() == {"stored": True}


def _token(username: str) -> str:
    from inference.auth import token_create

    return token_create(username=username)[1]


def _code(n: int) -> str:
    return f"def scale_{n}(values, factor):\n    out = []\n    for value in values:\n        "


def test_only_accepted_completions_are_collected_with_an_opaque_user(hearth, raw_token):
    from inference.feedback import accepted_completions
    from inference.models import CompletionRecord

    _policy(telemetry_enabled=True, telemetry_content=True)
    ide = Ide(hearth, raw_token)
    selected = ide.accept("/home/dev/proj/src/a.py", _code(1), "\n    return out\n")
    viewed = ide.complete("/home/dev/proj/src/b.py", _code(2))
    ide.event("view", viewed)
    snapped = ide.complete("/home/dev/proj/src/c.py", _code(3))
    ide.snapshot(snapped, "/home/dev/proj/src/c.py", _code(3) + "out.append(value)\n")
    Ide(hearth, _token("intruder")).event("select", viewed)  # someone else's event does not count

    records = {
        r["id"]: r
        for r in accepted_completions(since=CompletionRecord.objects.earliest("created_at").created_at)
    }
    assert set(records) == {selected, snapped}
    first = records[selected]
    row = CompletionRecord.objects.get(completion_id=selected)
    assert (first["prefix"], first["suffix"], first["middle"]) == (
        _code(1),
        "\n    return out\n",
        row.suggestion,
    )
    assert first["filepath"] == "/home/dev/proj/src/a.py" and first["language"] == "python"
    assert first["snapshot"] == "" and records[snapped]["snapshot"].endswith("out.append(value)\n")
    assert first["user"] and "dev" not in first["user"] and str(row.user_id) != first["user"]
    assert first["user"] == records[snapped]["user"]


def test_accepted_completions_train_the_next_model(hearth, raw_token, code_repo, micro_base):
    from trainer.datasets.accepted import accepted_used
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.tools.dataset_files import dataset_accepted_read, dataset_files_read

    repo = repository_register(source=str(code_repo))
    held = dataset_files_read(Path(dataset_build(repositories=[repo]).path), "heldout")[0]
    held_head = "".join(held["text"].splitlines(keepends=True)[:12])

    _policy(telemetry_enabled=True, telemetry_content=True)
    ide, other = Ide(hearth, raw_token), Ide(hearth, _token("dev2"))
    ide.accept("/home/dev/proj/src/tools.py", _code(1), "\n    return out\n")
    ide.accept("/home/dev/proj/src/tools.py", _code(1), "\n    return out\n")  # the same again: merged
    ide.accept("/home/dev/proj/src/mail.py", f"# owner: {EMAIL}\n" + _code(2))  # scrubbed
    ide.accept("/home/dev/proj/generated/api.py", _code(3))  # the dataset's exclusion
    ide.accept("/home/dev/proj/private/keys.py", _code(4))  # the policy's, added later
    ide.accept(f"/home/dev/checkout/{held['path']}", _code(5))  # a held-out file
    ide.accept("/home/dev/scratch.py", held_head)  # a held-out file's code under another name
    ide.complete("/home/dev/proj/src/seen.py", _code(6))  # never accepted
    snapped = ide.complete("/home/dev/proj/src/snap.py", _code(7), "\n    return out\n")
    ide.snapshot(
        snapped, "/home/dev/proj/src/snap.py", _code(7) + "out.append(value * factor)\n    return out\n"
    )
    other.accept("/home/dev2/proj/cmd/main.go", "func main() {\n\tfmt.Println(", "\n}\n", language="go")
    _policy(exclusion_globs="**/private/**")

    options = DatasetOptions(accepted_completions=True, exclude_globs=("generated/",))
    dataset = dataset_build(repositories=[repo], options=options)
    samples = dataset_accepted_read(Path(dataset.path))
    text = json.dumps(samples)
    assert EMAIL not in text and "<EMAIL>" in text
    paths = [s["path"] for s in samples]
    assert not [p for p in paths if "generated/" in p or "private/" in p or p.endswith(held["path"])]
    assert "/home/dev/scratch.py" not in paths
    snap = next(s for s in samples if s["path"].endswith("snap.py"))
    assert (snap["middle"], snap["source"]) == ("out.append(value * factor)", "snapshot")

    report = dataset.report["accepted"]
    assert report["read"] == 9 and report["kept"] == 4 and report["duplicates"] == 1
    assert report["left_out"] == {"excluded": 2, "held-out file": 1, "held-out text": 1}
    assert report["by_language"] == {"go": 1, "python": 3} and report["developers"] == 2
    assert "dev2" not in json.dumps(dataset.report)

    run = _train(dataset, micro_base)
    assert run.status == "succeeded", run.status_reason
    assert run.summary["accepted_completions"] == 4 and run.summary["accepted_developers"] == 2
    assert accepted_used(run.summary) == "used 4 accepted completions from 2 developers"
    assert "4 accepted completions" in run.log


def _train(dataset, base):
    """A queued run on `dataset`, trained through the stage runner in this process."""
    from appliance import paths
    from trainer.models import TrainingRun
    from trainer.training.config import LoraSettings
    from trainer.training.services import training_run_execute

    run = TrainingRun.objects.create(dataset=dataset, base=base, settings=LoraSettings(**TINY).as_dict())
    run.path = str(paths.run_dir(run.pk))
    run.save(update_fields=["path"])
    training_run_execute(run=run)
    run.refresh_from_db()
    return run
