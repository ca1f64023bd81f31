"""The admin's whole job in Debian's Chromium (Playwright's Python API), against a live server, a
real qcluster and the real engine: log in → add a repository → preview and start a fine-tune →
watch it → the version gated → a token → a completion with it over HTTP → usage → the audit log.
Screenshots of each page go to test-artifacts/screenshots/."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("HEARTH_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def engine(micro_base, settings):
    from inference.engine.server import engine_server_build
    from inference.policy import serving_rules_clear

    settings.HEARTH_ENGINE_PORT = _free_port()
    settings.HEARTH_POLICY_CACHE_S = 0
    settings.HEARTH_DEFERRED_WRITES = False  # usage rows written inline, visible at once
    serving_rules_clear()
    server, eng = engine_server_build(
        host="127.0.0.1", port=settings.HEARTH_ENGINE_PORT, n_ctx=512, n_threads=1, slots=2, poll_s=0.2
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield eng
    server.shutdown()
    server.server_close()
    eng.stop()


@pytest.fixture
def qcluster(settings, tmp_path, monkeypatch):
    from django_q.conf import Conf

    env = {
        **os.environ,
        "HEARTH_HOME": str(settings.HEARTH_HOME),
        "HEARTH_DATABASE": settings.DATABASES["default"]["NAME"],
        "HEARTH_RETRAIN_MIN_INTERVAL_H": "0",
        # The gate keeps every version (no gain can exceed 1.0), so the test always walks the wrong turn
        # of serving a version the gate did not promote.
        "HEARTH_PROMOTION_MARGIN": "1.0",
    }
    log = (tmp_path / "qcluster.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    monkeypatch.setattr(Conf, "SYNC", False)
    yield proc
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


@pytest.fixture
def page(live_server, monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        # Nothing of Chromium's own reaches for the network (the appliance has none to offer it).
        quiet = ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--no-first-run", "--disable-quic", *quiet]
        )
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(30_000)
        yield tab
        browser.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _until(page, predicate, timeout: float, what: str, every: float = 1.0, reload: bool = False):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(every * 1000)
        if reload:
            page.reload()
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _login(page, url: str, django_user_model) -> None:
    """A superuser, signed in through the login form."""
    django_user_model.objects.create_superuser("root", "root@hearth.invalid", "a-long-password-1")
    page.goto(f"{url}/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "a-long-password-1")
    page.click("input[type=submit]")


def _watch_training(page) -> list[int]:
    """Progress values seen while the run trains, without reloading (the page polls by itself)."""
    seen: list[int] = []

    def finished():
        bar = page.locator(".hearth-progress")
        if bar.count():
            value = int(bar.first.get_attribute("aria-valuenow"))
            if not seen or seen[-1] != value:
                seen.append(value)
                if 0 < value < 100 and len(seen) == 2:
                    _shot(page, "04-run-training")
        return page.locator(".hearth-status").inner_text() in {"succeeded", "failed", "cancelled"}

    _until(page, finished, 600, "the run to finish", every=0.5)
    return seen


def test_admin_flow_in_a_browser(
    live_server, page, qcluster, engine, code_repo, micro_base, django_user_model, settings
):
    import requests

    settings.HEARTH_SHOW_TEST_BASES = True  # the micro base is a test base

    url = live_server.url
    _login(page, url, django_user_model)
    page.wait_for_selector("#content")
    # A fresh appliance says what to do first: a checklist, its first step adding a repository.
    steps = page.locator("#first-steps")
    assert steps.count() == 1 and "Add a repository" in steps.inner_text()
    assert page.locator("#first-steps li.hearth-done").count() == 0
    _shot(page, "01-index")
    page.set_viewport_size({"width": 1024, "height": 768})
    _shot(page, "01-index-1024")
    page.set_viewport_size({"width": 1366, "height": 768})

    page.goto(f"{url}/admin/trainer/repository/add/")
    page.fill("#id_name", "sample")
    page.fill("#id_source", str(code_repo))
    page.click("input[name=_save]")
    _until(
        page,
        lambda: "ready" in page.locator("#result_list").inner_text().lower(),
        120,
        "the first sync",
        reload=True,
    )
    _shot(page, "02-repositories")

    page.goto(f"{url}/admin/trainer/trainingrun/")
    page.click("text=Start a custom model")
    # An absurd setting is refused beside its field, with its label and its limit.
    page.click("summary:has-text('Advanced settings')")
    page.fill("#id_lora_epochs", "100000")
    page.click("input[name=preview]")
    page.wait_for_selector(".errorlist")
    refused = page.locator(".errorlist").first.inner_text()
    assert "Epochs must be between 0 and 50" in refused, refused
    assert page.locator("#preview").count() == 0
    _shot(page, "03a-absurd-setting")
    page.fill("#id_lora_epochs", "0")
    if not page.locator("#id_lora_max_steps").is_visible():
        page.click("summary:has-text('Advanced settings')")
    for name, value in {
        "max_steps": "400",
        "seq_len": "64",
        "grad_accum": "1",
        "eval_every_steps": "80",
        "eval_sequences": "2",
        "warmup_steps": "1",
        "checkpoint_every_s": "5",
    }.items():
        page.fill(f"#id_lora_{name}", value)
    page.click("input[name=preview]")
    page.wait_for_selector("#preview")
    assert int(page.locator(".hearth-kept").inner_text()) > 10
    assert "binary" in page.locator("#preview").inner_text()
    _shot(page, "03-start-preview")
    # A double-click on Start starts one run and lands on it.
    posted = page.evaluate(
        "() => Object.fromEntries(new FormData(document.querySelector('#training-start')).entries())"
    )
    page.dblclick("#start-training")
    page.wait_for_selector(".hearth-live")
    from trainer.models import Dataset, TrainingRun

    assert TrainingRun.objects.count() == 1 and Dataset.objects.count() == 1
    assert f"/trainingrun/{TrainingRun.objects.get().pk}/" in page.url
    # The same form sent once more (a retried request, a reload that resubmits): the same run again.
    again = page.request.post(
        page.url.split("/admin/")[0] + "/admin/trainer/trainingrun/start/",
        form={**posted, "start": "Start training"},
    )
    assert again.ok and f"/trainingrun/{TrainingRun.objects.get().pk}/" in again.url, again.url
    assert TrainingRun.objects.count() == 1, "a second submit of the same form started another run"
    seen = _watch_training(page)
    assert page.locator(".hearth-status").inner_text() == "succeeded", page.locator(
        ".hearth-log"
    ).first.inner_text()
    assert len(seen) >= 2 and seen[-1] == 100, seen  # the bar moved, without a reload
    assert page.locator(".hearth-live polyline[data-series='loss']").count() == 1  # the chart drew
    _until(
        page, lambda: page.locator(".hearth-decision").count() > 0, 900, "the version's evaluation", every=2
    )
    _shot(page, "05-run-finished")

    page.click("text=Open version")
    page.wait_for_selector(".hearth-chart")
    decision = page.locator(".field-decision .readonly").inner_text()
    assert "promot" in decision.lower(), decision
    _shot(page, "06-version")
    from trainer.models import ModelVersion

    version = ModelVersion.objects.get()
    assert version.status == "candidate" and version.gate_passed is False  # HEARTH_PROMOTION_MARGIN=1.0
    # The gate kept it: serving it anyway is possible, but not by a click alone.
    page.click("a.hearth-button:has-text('Promote')")
    assert "did not beat" in page.locator("#confirm-page").inner_text()
    assert page.locator("#promotion-figures").count() == 1  # better and worse lines, the gain
    page.click("#confirm")  # no reason given
    page.wait_for_selector(".errorlist")
    version.refresh_from_db()
    assert version.status == "candidate"
    _shot(page, "07-confirm-promote-needs-a-reason")
    page.fill("#id_reason", "the team lead wants it on the pilot group")
    page.click("#confirm")
    page.wait_for_selector(".field-status")
    flag = page.locator("#content").inner_text()
    assert "Served against the promotion gate" in flag and "pilot group" in flag, flag[:800]
    page.goto(f"{url}/admin/")
    assert "Served against the promotion gate" in page.locator("#dashboard").inner_text()
    _shot(page, "07b-dashboard-flagged")
    page.goto(f"{url}/admin/trainer/modelversion/{version.pk}/change/")
    assert page.locator(".field-status .readonly").inner_text().lower() == "promoted"
    assert page.locator(".field-files a").count() >= 1  # GGUF files with their sha256, for download

    page.goto(f"{url}/admin/inference/apitoken/")
    page.click("text=Create a token")
    page.fill("#id_name", "laptop")
    page.fill("#id_rate_limit_per_minute", "60")
    page.click("input[type=submit][value='Create token']")
    raw = page.input_value("#raw-token")
    _shot(page, "08-token-created")
    assert raw.startswith("hth_")

    # Usage is kept only once the admin turns telemetry on (off by default): on the Policies page.
    page.click("text=Policies")
    page.check("#id_telemetry_enabled")
    page.click("input[type=submit][value='Save policies']")
    page.wait_for_selector(".messagelist")
    assert page.locator("#id_telemetry_enabled").is_checked()
    _shot(page, "09-policies")

    answer = requests.post(
        f"{url}/v1/completions",
        headers={"Authorization": f"Bearer {raw}"},
        timeout=60,
        json={"prompt": "def add(a, b):\n    ", "max_tokens": 8, "stop": ["\n"]},
    )
    assert answer.status_code == 200, answer.text
    page.goto(f"{url}/admin/inference/completionrecord/")
    assert "root" in page.locator("#result_list").inner_text()
    _shot(page, "10-usage")

    page.goto(f"{url}/admin/appliance/auditentry/")
    log = page.locator("#result_list").inner_text()
    for action in ("repository.add", "training.start", "model.promote", "token.create"):
        assert action in log, action
    assert "version.promote_override" in log
    assert "policy.change" in log or "policies" in log, log[:500]
    _shot(page, "11-audit-log")

    page.click("#hearth-inbox-link")  # the version's notification waits unread in the header's inbox
    assert page.locator("#content").inner_text().count("Model version") >= 1
    _shot(page, "12-inbox")


def test_a_canary_in_a_browser(live_server, page, engine, micro_base, django_user_model, tmp_path):
    """From a candidate's page: try it on 40% of developers, read the comparison once their IDEs have
    reported what they accepted, see it on the dashboard, roll it back."""
    import shutil

    from inference.models import ServingPolicy
    from tests.inference.conftest import model_version_make
    from tests.inference.test_canary import developers
    from tests.inference.test_feedback import Ide
    from trainer.versions import canary_version

    ServingPolicy.objects.update_or_create(pk=1, defaults={"telemetry_enabled": True})
    gguf = tmp_path / "candidate.gguf"
    shutil.copy(micro_base.gguf_path, gguf)
    version = model_version_make(base=micro_base, gguf_path=str(gguf))
    url = live_server.url
    _login(page, url, django_user_model)
    page.goto(f"{url}/admin/trainer/modelversion/{version.pk}/change/")
    page.click("text=Try on a share of developers first")
    page.fill("#id_percent", "40")
    page.click("#canary-start")
    assert "is served to 40% of developers" in page.inner_text("#content-start, body")
    _until(page, lambda: (engine.health()["canary"] or {}).get("model"), 60, "the canary to load")

    inside, outside = developers(2, version.pk, 40)
    for token in inside + outside:
        ide = Ide(live_server.url, token)
        for i in range(4):
            cid = ide.complete("/src/app.py", f"def total_{i}(items):\n    return ")
            ide.event("view", cid)
            if token in inside or i == 0:
                ide.event("select", cid)
    page.reload()
    verdict = page.inner_text("#canary-verdict")
    assert verdict.startswith("Better:") and "8 of 8 shown accepted" in verdict and "2 of 8" in verdict
    _shot(page, "12-canary")
    page.goto(f"{url}/admin/")
    assert "Canary:" in page.inner_text("#dashboard-canary")
    _shot(page, "13-dashboard-canary")
    page.goto(f"{url}/admin/trainer/modelversion/{version.pk}/canary/")
    page.click("#canary-rollback")
    assert "rolled back" in page.inner_text("body") and canary_version() is None
