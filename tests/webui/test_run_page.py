"""A training run's page tells one live truth: everything about the run is in the panel that the
page refreshes (no static dump of fields left behind, saying "running" under "succeeded"); the page
and the fragment it polls show the same status, in the header, the bar and the tab's title; it
follows the dataset build before training, and the version's export, evaluation and decision after."""

from __future__ import annotations

import html
import re

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(code_repo):
    from trainer.mirrors.services import repository_register
    from trainer.models import BaseModel, Dataset, TrainingRun

    repo = repository_register(source=str(code_repo))
    base = BaseModel.objects.create(slug="acme-coder-1b", display_name="Acme Coder 1B", status="ready")
    dataset = Dataset.objects.create()
    dataset.repositories.set([repo])
    run = TrainingRun.objects.create(base=base, dataset=dataset, settings={"preset": "standard"})
    run.log_line(f"queued: dataset {dataset.pk} is built first, then the fine-tune starts")
    return run


def _pages(client, run) -> tuple[str, str]:
    page = client.get(f"/admin/trainer/trainingrun/{run.pk}/change/")
    live = client.get(f"/admin/trainer/trainingrun/{run.pk}/live/")
    assert page.status_code == live.status_code == 200
    return page.content.decode(), live.content.decode()


def _said(fragment: str) -> dict:
    """What a page or fragment says about the run: status word, the bar's label, polling, stages."""
    text = lambda s: html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", s))).strip()
    bar = re.search(r'class="hearth-progress".*?</div></div><div[^>]*>(.*?)</div>', fragment, re.DOTALL)
    return {
        "status": re.search(r'<span class="hearth-status">(\w+)</span>', fragment).group(1),
        "data_status": re.search(r'data-status="(\w+)"', fragment).group(1),
        "active": re.search(r'data-active="([01])"', fragment).group(1) == "1",
        "bar": text(bar.group(1)),
        "stages": [text(li) for li in re.findall(r"<li class=\"hearth-stage-.*?</li>", fragment, re.DOTALL)],
    }


def _agree(client, run) -> dict:
    """The page and the live fragment say the same, and the status word is the run's everywhere."""
    page, live = _pages(client, run)
    run.refresh_from_db()
    on_page, on_poll = _said(page), _said(live)
    assert on_page == on_poll
    assert on_page["status"] == on_page["data_status"] == run.status
    assert on_page["bar"].startswith(run.status), on_page["bar"]
    assert re.search(rf"<title>Run {run.pk}: {run.status} \|", page)  # the tab says it too
    return on_page


def test_everything_about_the_run_is_in_the_live_panel(admin_client, rows):
    from trainer.models import TrainingRun

    run = rows
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded",
        step=86,
        total_steps=86,
        worker="worker-host pid 4321",
        attempts=1,
        method="lora-fp32",
    )
    page, _ = _pages(admin_client, run)
    assert "All fields" not in page
    assert 'class="form-row field-' not in page  # no static admin fields, drawn once at load
    assert "4321" not in page  # the worker's pid is shown only while it trains
    body = page.split('<div class="hearth-live"', 1)[1]
    assert "Acme Coder 1B (acme-coder-1b)" in body and "Preset" in body  # the run's record, in the panel
    said = _agree(admin_client, run)
    assert said["bar"] == "succeeded: 86 of 86 steps"
    assert (
        said["active"] and said["stages"][2] == "… Export and evaluation: starting"
    )  # its version comes next


def test_the_header_and_the_bar_never_disagree_while_it_starts(admin_client, rows):
    from trainer.models import Dataset, ProgressPoint, TrainingRun

    run = rows
    Dataset.objects.filter(pk=run.dataset_id).update(status="ready", train_files=40, heldout_files=6)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", worker="worker-host pid 4321")
    said = _agree(admin_client, run)  # claimed by a worker, the model still loading: no step count yet
    assert said["active"] and "waiting for a worker" not in said["bar"]
    assert said["bar"] == "running: loading the base model and building the samples"

    TrainingRun.objects.filter(pk=run.pk).update(step=30, total_steps=86)
    ProgressPoint.objects.create(run=run, step=30, total_steps=86, loss=2.5, tokens_per_s=900, eta_s=4000)
    said = _agree(admin_client, run)
    assert said["bar"] == "running: step 30 of 86 (35%)"
    assert said["stages"][0].startswith(f"✓ Dataset {run.dataset_id}: 40 training files, 6 held out")
    assert said["stages"][1] == "… Fine-tune: step 30 of 86"


def test_the_page_follows_the_dataset_build_before_training(admin_client, rows):
    from trainer.models import Dataset

    run = rows
    dataset = run.dataset
    said = _agree(admin_client, run)
    assert said["active"]
    assert said["bar"] == f"queued: dataset {dataset.pk} is built first; waiting for a worker to build it"
    assert said["stages"][0].startswith(f"… Dataset {dataset.pk}: waiting for a worker")

    dataset.transition(Dataset.Status.BUILDING)
    dataset.log_line("reading sample at 0123abcd")
    said = _agree(admin_client, run)
    assert said["bar"].startswith(f"queued: building dataset {dataset.pk} (") and said["active"]
    _, live = _pages(admin_client, run)
    assert "reading sample at 0123abcd" in live  # the dataset's own log, while it builds

    dataset.transition(Dataset.Status.FAILED, reason="Too little data: 2 files left after filtering.")
    run.transition(run.Status.FAILED, reason=f"Dataset {dataset.pk} failed: too little data.")
    said = _agree(admin_client, run)
    assert not said["active"]
    assert said["bar"] == f"failed: dataset {dataset.pk} failed, before training"
    assert said["stages"][0].startswith(
        f"✗ Dataset {dataset.pk}: Too little data: 2 files left after filtering."
    )


def test_after_training_the_export_evaluation_and_decision_with_its_statistics(admin_client, rows):
    from trainer.models import Dataset, EvaluationReport, ModelVersion, TrainingRun

    run = rows
    Dataset.objects.filter(pk=run.dataset_id).update(status="ready")
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", step=86, total_steps=86)
    version = ModelVersion.objects.create(base=run.base, run=run)
    version.log_line("export: model.gguf written")
    said = _agree(admin_client, run)
    assert said["active"]  # keeps polling until the decision
    assert said["stages"][2].startswith("… Export and evaluation: export to GGUF")
    _, live = _pages(admin_client, run)
    assert '<details id="version-log" open>' in live and "export: model.gguf written" in live

    EvaluationReport.objects.create(
        version=version,
        dataset=run.dataset,
        status="done",
        decision="Kept as a candidate: the tuned model completed 12 lines exactly, the base 10.\n"
        "Statistics: tuned against base, fim mode; McNemar p = 0.3",
    )
    version.transition(ModelVersion.Status.CANDIDATE)
    said = _agree(admin_client, run)
    assert not said["active"] and said["stages"][3] == "✓ Decision: kept as a candidate"
    _, live = _pages(admin_client, run)
    assert (
        '<p class="hearth-decision">Kept as a candidate: the tuned model completed 12 lines exactly, '
        "the base 10.</p>" in live
    )
    stats = re.search(
        r'<details class="hearth-stats"><summary>Statistics</summary>(.*?)</details>', live, re.DOTALL
    )
    assert stats and "McNemar p = 0.3" in stats.group(1)
