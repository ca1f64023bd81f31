"""The "Start a custom model" page as an admin who did not write Hearth meets it: the base
preselected is the one served now (else the appliance's default), named as people name it, with
test bases out of the way; the same form submitted twice starts one run; a rate-limit refusal links
the run that holds it; an absurd setting is refused beside its field with its limit; the preview's
figures are real tokens, steps and times in words."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

URL = "/admin/trainer/trainingrun/start/"


def _base(slug: str, name: str):
    from trainer.models import BaseModel

    return BaseModel.objects.create(slug=slug, display_name=name, status="ready")


@pytest.fixture
def bases(settings):
    """The default base, an imported one, and a micro test base (first by slug)."""
    return {
        "default": _base(settings.HEARTH_BASE_MODEL, "SmolLM2-135M-Instruct"),
        "other": _base("acme-coder-1b", "Acme Coder 1B"),
        "micro": _base("hearth-micro-s0", "Hearth micro model (tests)"),
    }


@pytest.fixture
def ready_repo(code_repo):
    from trainer.mirrors.services import repository_register

    return repository_register(source=str(code_repo))


def _defaults() -> dict:
    """The settings fields as a browser posts them untouched."""
    from dataclasses import fields

    from trainer.training.config import LoraSettings

    data = {f"lora_{f.name}": f.default for f in fields(LoraSettings) if not isinstance(f.default, bool)}
    data.update({f"lora_{f.name}": "on" for f in fields(LoraSettings) if f.default is True})
    return data


def _options(page: str) -> dict[str, tuple[str, bool]]:
    """The base dropdown: value → (label, selected)."""
    select = re.search(r'<select name="base".*?</select>', page, re.DOTALL).group(0)
    return {
        value: (label, bool(selected))
        for value, selected, label in re.findall(
            r'<option value="(\d+)"( selected)?>([^<]*)</option>', select
        )
    }


def _key(page: str) -> str:
    return re.search(r'<input type="hidden" name="submission" value="([0-9a-f]+)"', page).group(1)


def test_the_base_served_now_is_preselected_else_the_default_and_test_bases_stay_hidden(
    admin_client, bases, settings
):
    from django.utils import timezone

    from trainer.models import Dataset, ModelVersion, TrainingRun

    options = _options(admin_client.get(URL).content.decode())
    assert str(bases["micro"].pk) not in options  # a test base, though first by slug
    assert options[str(bases["default"].pk)] == ("SmolLM2-135M-Instruct", True)  # the slug adds nothing
    assert options[str(bases["other"].pk)] == ("Acme Coder 1B (acme-coder-1b)", False)

    run = TrainingRun.objects.create(
        base=bases["other"], dataset=Dataset.objects.create(status="ready"), status="succeeded"
    )
    ModelVersion.objects.create(base=bases["other"], run=run, status="promoted", promoted_at=timezone.now())
    options = _options(admin_client.get(URL).content.decode())
    assert options[str(bases["other"].pk)] == ("Acme Coder 1B (acme-coder-1b) — served now", True)
    assert not options[str(bases["default"].pk)][1]

    settings.HEARTH_SHOW_TEST_BASES = True
    options = _options(admin_client.get(URL).content.decode())
    assert options[str(bases["micro"].pk)] == ("Hearth micro model (tests) (hearth-micro-s0)", False)


def test_without_the_default_base_the_form_says_how_to_register_it(admin_client, settings):
    _base("hearth-micro-s0", "Hearth micro model (tests)")  # hidden: no base to offer
    page = admin_client.get(URL).content.decode()
    assert '<select name="base"' not in page
    hint = re.search(r'<p class="hearth-hint" id="base-missing">(.*?)</p>', page, re.DOTALL).group(1)
    assert settings.HEARTH_BASE_MODEL in hint and "hearth basemodel_fetch" in hint
    assert "HEARTH_SHOW_TEST_BASES" in hint
    assert re.search(r'id="start-training"[^>]* disabled', page)


def test_the_same_form_submitted_twice_starts_one_run(admin_client, bases, ready_repo, settings):
    from django.contrib.messages import get_messages

    from trainer.models import TrainingRun

    settings.HEARTH_RETRAIN_MIN_INTERVAL_H = 168  # the second submit must not be refused by the first
    key = _key(admin_client.get(URL).content.decode())
    assert key != _key(admin_client.get(URL).content.decode())  # one key per form shown
    data = {**_defaults(), "repositories": [ready_repo.pk], "base": bases["default"].pk, "submission": key}

    invalid = admin_client.post(URL, {**data, "lora_rank": "", "preview": "1"}).content.decode()
    assert _key(invalid) == key  # carried through a re-render

    first = admin_client.post(URL, {**data, "start": "1"})
    run = TrainingRun.objects.get()
    assert first.status_code == 302 and first["Location"].endswith(f"/trainingrun/{run.pk}/change/")
    assert run.submission == key

    second = admin_client.post(URL, {**data, "start": "1"})
    assert TrainingRun.objects.count() == 1
    assert second.status_code == 302 and second["Location"] == first["Location"]
    said = [str(m) for m in get_messages(second.wsgi_request)]
    assert any("already started" in m for m in said), said


def test_a_rate_limit_refusal_links_the_run_that_holds_it(admin_client, bases, ready_repo, settings):
    from trainer.models import Dataset, TrainingRun

    settings.HEARTH_RETRAIN_MIN_INTERVAL_H = 168
    holder = TrainingRun.objects.create(base=bases["default"], dataset=Dataset.objects.create(status="ready"))
    page = admin_client.get(URL).content.decode()
    data = {
        **_defaults(),
        "repositories": [ready_repo.pk],
        "base": bases["default"].pk,
        "submission": _key(page),
    }
    response = admin_client.post(URL, {**data, "start": "1"})
    assert response.status_code == 200 and TrainingRun.objects.count() == 1
    section = re.search(
        r'<div class="hearth-section" id="retrain-limit">.*?</div>\s*</div>',
        response.content.decode(),
        re.DOTALL,
    )
    assert section, "the retrain-limit section"
    text = section.group(0)
    assert "give a reason to start anyway" in text
    assert 'name="override_reason"' in text
    assert f'href="/admin/trainer/trainingrun/{holder.pk}/change/"' in text


def test_absurd_epochs_are_refused_beside_the_field_with_the_limit(admin_client, bases, ready_repo):
    from trainer.models import TrainingRun

    data = {
        **_defaults(),
        "repositories": [ready_repo.pk],
        "base": bases["default"].pk,
        "lora_epochs": "100000",
    }
    response = admin_client.post(URL, {**data, "start": "1"})
    page = response.content.decode()
    assert TrainingRun.objects.count() == 0
    assert response.context["form"].errors["lora_epochs"] == [
        "Epochs must be between 0 and 50 (it is 100,000)."
    ]
    row = re.search(r'<tr class="errors">(.*?)</tr>', page, re.DOTALL).group(1)
    assert '<label for="id_lora_epochs">Epochs</label>' in row and "must be between 0 and 50" in row
    assert '<details id="advanced-settings" open>' in page  # the refused field is in view
    assert '<label for="id_lora_learning_rate">Learning rate</label>' in page  # readable labels
    assert "Between 0 and 1,000,000." in page  # each limit stated in its help


def test_the_preview_shows_real_tokens_steps_and_the_time_after_training(
    admin_client, bases, ready_repo, monkeypatch
):
    from trainer import pipeline

    preview = pipeline.DatasetPreview(
        report={
            "seen_files": 1234,
            "kept_files": 1000,
            "train_files": 950,
            "heldout_files": 50,
            "tokens": {"total": 4567890, "train": 4000000},
            "secrets": {"total": 3, "files": 2},
            "skipped": {"binary": 12},
            "by_language": {"python": {"files": 1000, "tokens": 4567890}},
        },
        rejected="",
        train_tokens=3456789,
        steps=1688,
        tokens_per_step=2048,
        tokens_per_s=0.78,  # 4,431,918 s: a typo'd setting on a slow worker
        speed_from="run 7 of smollm2-135m-instruct",
        after_s=260.0,
        after_from="version 3",
    )
    monkeypatch.setattr(pipeline, "dataset_preview", lambda **_: preview)
    data = {**_defaults(), "repositories": [ready_repo.pk], "base": bases["default"].pk}
    page = admin_client.post(URL, {**data, "preview": "1"}).content.decode()
    text = re.sub(r"<[^>]+>", " ", page.split('id="preview"')[1])
    text = re.sub(r"\s+", " ", text)
    assert "Training tokens 3,456,789" in text and "Steps 1,688" in text
    assert "Training about 51 days" in text and "measured on run 7" in text
    assert "Then about 4 min 20 s of export and evaluation, measured on version 3" in text
    assert "In all about 51 days" in text
    assert "4431918" not in text and "4431" not in text

    monkeypatch.setattr(
        pipeline,
        "dataset_preview",
        lambda **_: pipeline.DatasetPreview(
            **{
                **preview.__dict__,
                "after_s": None,
                "after_from": "no model version of smollm2-135m-instruct exported and evaluated yet",
            }
        ),
    )
    page = admin_client.post(URL, {**data, "preview": "1"}).content.decode()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.split('id="preview"')[1]))
    assert "Then not measured yet export and evaluation: no model version of" in text


def test_a_real_preview_counts_training_tokens_with_the_bases_tokenizer(
    admin_client, micro_base, ready_repo, settings
):
    settings.HEARTH_SHOW_TEST_BASES = True
    data = {**_defaults(), "repositories": [ready_repo.pk], "base": micro_base.pk, "lora_seq_len": 64}
    response = admin_client.post(URL, {**data, "preview": "1"})
    preview = response.context["preview"]
    assert preview.train_tokens > 0 and preview.steps == _steps(preview.train_tokens)
    assert f'<td class="hearth-train-tokens">{preview.train_tokens:,}</td>' in response.content.decode()


def _steps(train_tokens: int) -> int:
    from trainer.training.config import LoraSettings

    return LoraSettings(seq_len=64).steps_for(train_tokens)


def test_the_token_form_says_when_an_empty_expiry_expires(admin_client, settings):
    settings.HEARTH_TOKEN_DAYS = 30
    page = admin_client.get("/admin/inference/apitoken/new/").content.decode()
    assert (
        "Empty: expires after HEARTH_TOKEN_DAYS days (90 unless set; 0 = never). On this appliance: 30 days."
        in page
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_start_button_turns_busy_and_a_double_click_starts_one_run(
    live_server, django_user_model, bases, ready_repo, monkeypatch
):
    from playwright.sync_api import sync_playwright

    from trainer import pipeline
    from trainer.models import TrainingRun

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    monkeypatch.setattr(pipeline, "job_enqueue", lambda *a, **k: None)  # the run stays queued
    django_user_model.objects.create_superuser("root", "root@hearth.invalid", "a-long-password-1")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        tab = browser.new_page(viewport={"width": 1366, "height": 768})
        tab.goto(f"{live_server.url}/admin/")
        tab.fill("#id_username", "root")
        tab.fill("#id_password", "a-long-password-1")
        tab.click("input[type=submit]")
        tab.goto(f"{live_server.url}{URL}")
        # Held back once, to see the buttons as the first click leaves them.
        tab.evaluate(
            "document.getElementById('training-start').addEventListener('submit', e => e.preventDefault())"
        )
        tab.click("#start-training")
        assert tab.locator("#start-training").is_disabled()
        assert tab.locator("#start-training").input_value() == "Starting…"
        assert tab.locator("#preview-dataset").is_disabled()
        assert tab.locator("input[type=hidden][name=start]").count() == 1

        tab.goto(f"{live_server.url}{URL}")
        tab.dblclick("#start-training")
        tab.wait_for_url(re.compile(r"/trainingrun/\d+/change/$"))
        assert TrainingRun.objects.count() == 1
        assert tab.locator(".hearth-status").inner_text() == "queued"
        browser.close()


def test_accepted_completions_are_offered_only_while_content_is_collected(admin_client, bases, ready_repo):
    from inference.models import ServingPolicy
    from trainer.models import TrainingRun

    def box(page: str) -> str:
        return re.search(r'<input type="checkbox" name="accepted_completions"[^>]*>', page).group(0)

    policy = {"telemetry_enabled": True, "telemetry_content": False, "retention_days": 14}
    ServingPolicy.objects.update_or_create(pk=1, defaults=policy)
    page = admin_client.get(URL).content.decode()
    assert "Include accepted completions (last 14 days)" in page and "disabled" in box(page)
    assert "the telemetry policy does not collect content" in page and "Telemetry content" in page
    data = {**_defaults(), "repositories": [ready_repo.pk], "base": bases["default"].pk}
    admin_client.post(URL, {**data, "accepted_completions": "on", "start": "1", "submission": "a1"})
    assert TrainingRun.objects.get(submission="a1").dataset.options["accepted_completions"] is False

    ServingPolicy.objects.filter(pk=1).update(telemetry_content=True)
    page = admin_client.get(URL).content.decode()
    assert "disabled" not in box(page) and "does not collect content" not in page
    admin_client.post(URL, {**data, "accepted_completions": "on", "start": "1", "submission": "b2"})
    assert TrainingRun.objects.get(submission="b2").dataset.options["accepted_completions"] is True


def test_the_preview_and_the_dataset_page_count_accepted_completions(
    admin_client, micro_base, ready_repo, settings
):
    from django.contrib.auth import get_user_model

    from inference.models import CompletionEvent, CompletionRecord, ServingPolicy
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build

    settings.HEARTH_SHOW_TEST_BASES = True
    ServingPolicy.objects.update_or_create(
        pk=1, defaults={"telemetry_enabled": True, "telemetry_content": True}
    )
    for n, name in enumerate(("dev-anastasia", "dev-benedikt")):
        user = get_user_model().objects.create(username=name)
        CompletionRecord.objects.create(
            completion_id=f"c{n}",
            user=user,
            dialect="tabby",
            model="m",
            language="python",
            filepath=f"/home/{name}/proj/app.py",
            latency_ms=1.0,
            outcome="ok",
            prompt=f"def f{n}(x):\n    y = x * 2\n    <|suffix|>\n",
            suggestion="return y + 1",
        )
        CompletionEvent.objects.create(completion_id=f"c{n}", user=user, kind="select")
    data = {**_defaults(), "repositories": [ready_repo.pk], "base": micro_base.pk, "lora_seq_len": 64}
    page = admin_client.post(URL, {**data, "accepted_completions": "on", "preview": "1"}).content.decode()
    text = re.search(r'<p class="hearth-accepted">(.*?)</p>', page, re.DOTALL).group(1)
    assert "2 of 2 completions accepted since" in text and "from 2 developers" in text
    assert "anastasia" not in page and "benedikt" not in page  # neither names nor paths

    dataset = dataset_build(repositories=[ready_repo], options=DatasetOptions(accepted_completions=True))
    page = admin_client.get(f"/admin/trainer/dataset/{dataset.pk}/change/").content.decode()
    assert "Accepted completions (training only)" in page and "<td>python</td><td>2</td>" in page
