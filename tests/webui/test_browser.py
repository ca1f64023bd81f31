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

    django_user_model.objects.create_superuser("root", "root@hearth.invalid", "a-long-password-1")
    url = live_server.url
    page.goto(f"{url}/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "a-long-password-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#content")
    _shot(page, "01-index")

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
    page.click("#start-training")
    page.wait_for_selector(".hearth-live")
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
    assert "promot" in decision or "kept" in decision or "not" in decision, decision
    _shot(page, "06-version")
    if page.locator("a.hearth-button:has-text('Promote')").count():
        page.click("a.hearth-button:has-text('Promote')")
        _shot(page, "07-confirm-promote")
        page.click("#confirm")
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
        assert action in log or (action == "model.promote" and "promoted" in decision), action
    assert "policy.change" in log or "policies" in log, log[:500]
    _shot(page, "11-audit-log")

    page.click("#hearth-inbox-link")  # the version's notification waits unread in the header's inbox
    assert page.locator("#content").inner_text().count("Model version") >= 1
    _shot(page, "12-inbox")
