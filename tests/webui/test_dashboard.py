"""The admin index as a dashboard: the first steps until they are done, usage per day over 28 days
with the promotion marked, per language and per model, p50 and p95 — or, with telemetry off, a
hint that nothing is recorded."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone


def _usage(page: str) -> str:
    """The dashboard's usage card (it comes last, before the stock list of models)."""
    return page[page.index('id="usage"') : page.index('id="content-main"')]


def _telemetry_on() -> None:
    from inference.models import ServingPolicy

    ServingPolicy.objects.update_or_create(pk=1, defaults={"telemetry_enabled": True})


def _record(i: int, *, days: float = 0, language: str = "python", model: str = "base"):
    from inference.models import CompletionRecord

    return CompletionRecord(
        completion_id=f"c{i}",
        created_at=timezone.now() - timedelta(days=days),
        dialect="openai",
        model=model,
        language=language,
        latency_ms=10.0 + i % 50,
        outcome="ok",
    )


@pytest.mark.django_db
def test_usage_per_day_with_the_promotion_marked_and_the_breakdown(admin_client, micro_base, code_repo):
    from inference.models import CompletionEvent, CompletionRecord
    from inference.selectors import usage_daily
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models import ModelVersion, TrainingRun

    _telemetry_on()
    now = timezone.now()
    dataset = dataset_build(repositories=[repository_register(source=str(code_repo))])
    run = TrainingRun.objects.create(base=micro_base, dataset=dataset, status="succeeded")
    version = ModelVersion.objects.create(
        base=micro_base, run=run, status="promoted", promoted_at=now - timedelta(days=3)
    )
    for i in range(20):  # 10 a day, 5 and 2 days ago: before and after the promotion
        days = 5 if i < 10 else 2
        CompletionRecord.objects.create(
            completion_id=f"c{i}",
            created_at=now - timedelta(days=days),
            dialect="openai",
            model="hearth-micro-test" if days == 5 else f"v{version.pk}",
            language="python" if i % 2 else "go",
            latency_ms=10.0 + i,
            outcome="ok",
        )
        CompletionEvent.objects.create(completion_id=f"c{i}", kind="view", user_id=None, choice_index=0)
        if i >= 10 and i % 2:
            CompletionEvent.objects.create(completion_id=f"c{i}", kind="select", user_id=None, choice_index=0)

    daily = usage_daily(days=28, until=now)
    assert len(daily) == 28 and daily[-1]["offset"] == 0
    by_offset = {row["offset"]: row for row in daily}
    assert by_offset[-5]["requests"] == 10 and by_offset[-2]["requests"] == 10
    assert by_offset[-5]["acceptance_rate"] == 0 and by_offset[-2]["acceptance_rate"] == 0.5
    assert by_offset[-2]["latency_ms_p95"] >= by_offset[-2]["latency_ms_p50"]

    page = admin_client.get("/admin/").content.decode()
    usage = _usage(page)
    assert f"v{version.pk} promoted" in usage and 'class="hearth-mark"' in usage
    assert usage.count('data-series="p95"') == 1 and usage.count('data-series="p50"') == 1
    assert "<td>python</td>" in usage and "<td>go</td>" in usage and f"<td>v{version.pk}</td>" in usage
    assert "last 28 days" in usage and "Telemetry is off" not in usage
    assert "<td>25%</td>" in usage  # 5 accepted of the 20 shown, as a percentage


@pytest.mark.django_db
def test_with_telemetry_off_the_usage_card_says_so_instead_of_drawing_zeros(admin_client):
    from django.urls import reverse

    usage = _usage(admin_client.get("/admin/").content.decode())
    assert "Telemetry is off: Hearth records no completions. Turn it on in" in usage
    assert f'href="{reverse("admin:inference_servingpolicy_policies")}">Policies</a>' in usage
    assert "<svg" not in usage and "requests" not in usage  # no "0 requests", no flat line
    assert reverse("admin:inference_completionrecord_usage") in usage  # the usage page, one click away

    _telemetry_on()
    usage = _usage(admin_client.get("/admin/").content.decode())
    assert "Telemetry is off" not in usage and "No completions recorded in the last 28 days." in usage
    assert "<svg" not in usage


def _tick_labels(svg: str) -> list[str]:
    """The y axis's tick labels of a line chart (right-aligned texts left of the plot)."""
    return re.findall(
        r'<text x="48" y="[\d.]+" font-size="10" text-anchor="end" fill="#666">([^<]*)</text>', svg
    )


def test_count_axes_start_at_zero_in_whole_steps():
    from webui.charts import line_chart

    flat = line_chart(
        [("requests", [(-2, 0.0), (-1, 3.0), (0, 0.0)])], x_label="d", y_label="r", integer_y=True
    )
    assert _tick_labels(flat) == ["0", "1", "2", "3"]  # not -0.24 … 3.24
    big = line_chart([("requests", [(0, 1234.0)])], x_label="d", y_label="r", integer_y=True)
    assert _tick_labels(big) == ["0", "500", "1,000", "1,500"]
    rate = line_chart([("accepted", [(0, 0.4)])], x_label="d", y_label="a", y_max=1.0, y_format="{:.0%}")
    assert _tick_labels(rate) == ["0%", "25%", "50%", "75%", "100%"]
    # A loss chart keeps its padded range around the data.
    assert _tick_labels(line_chart([("loss", [(0, 2.0), (1, 1.0)])], x_label="s", y_label="l"))[0] == "0.92"


@pytest.mark.django_db
def test_usage_counts_have_thousands_separators_and_whole_ticks(admin_client):
    from inference.models import CompletionRecord

    _telemetry_on()
    CompletionRecord.objects.bulk_create(
        [_record(i, days=1 if i < 1200 else 0.01, language="go" if i % 3 else "python") for i in range(1203)]
    )
    usage = _usage(admin_client.get("/admin/").content.decode())
    assert "<td>1,203</td>" in usage and "<td>802</td>" in usage  # overall (7 and 28 days), go
    requests_chart = usage[usage.index('aria-label="requests"') : usage.index("</svg>")]
    labels = _tick_labels(requests_chart)
    assert labels[0] == "0" and all(re.fullmatch(r"[\d,]+", label) for label in labels), labels
    assert "1,200" in labels or "1,500" in labels


@pytest.mark.django_db
def test_the_first_run_checklist_ticks_each_step_and_goes_when_all_are_done(admin_client, admin_user):
    from django.urls import reverse

    from inference.models import ApiToken
    from trainer.models import BaseModel, Dataset, Repository, TrainingRun

    page = admin_client.get("/admin/").content.decode()
    steps = page[page.index('id="first-steps"') : page.index("</ol>")]
    assert steps.count("<li") == 4 and "hearth-done" not in steps
    for name in (
        "admin:trainer_repository_add",
        "admin:trainer_trainingrun_start",
        "admin:inference_apitoken_new",
    ):
        assert f'href="{reverse(name)}"' in steps, name
    assert "http://testserver/v1</code>" in steps  # where an IDE points, as this page was asked for

    Repository.objects.create(name="sample", source="/srv/git/sample.git")
    base = BaseModel.objects.create(slug="b", display_name="b")
    TrainingRun.objects.create(base=base, dataset=Dataset.objects.create(status=Dataset.Status.READY))
    token = ApiToken.objects.create(user=admin_user, name="laptop", prefix="hth_x", digest="d" * 64)
    page = admin_client.get("/admin/").content.decode()
    steps = page[page.index('id="first-steps"') : page.index("</ol>")]
    assert steps.count('class="hearth-done"') == 3  # the IDE has not sent a request yet

    token.last_used_at = timezone.now()  # a request authenticated with it: the IDE is pointed
    token.save()
    assert 'id="first-steps"' not in admin_client.get("/admin/").content.decode()
