"""The admin index as a dashboard: usage per day over 28 days with the promotions marked, per
language and per model, p50 and p95."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone


@pytest.mark.django_db
def test_usage_per_day_with_the_promotion_marked_and_the_breakdown(admin_client, micro_base, code_repo):
    from inference.models import CompletionEvent, CompletionRecord
    from inference.selectors import usage_daily
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models import ModelVersion, TrainingRun

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
    usage = page[page.index('id="usage"') :]
    assert f"v{version.pk} promoted" in usage and 'class="hearth-mark"' in usage
    assert usage.count('data-series="p95"') == 1 and usage.count('data-series="p50"') == 1
    assert "<th>python</th>" in usage and "<th>go</th>" in usage and f"<th>v{version.pk}</th>" in usage
    assert "last 28 days" in usage
