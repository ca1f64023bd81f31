"""The usage page: the 7- and 28-day figures per language and per model and the filter counts, in
the browser rather than in banners on the completion list; the view permission on completion records
opens it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture
def recorded():
    """Telemetry on; 1,500 completions 10 days ago (go) and 3 today (python, one accepted); filters."""
    from inference.models import CompletionEvent, CompletionRecord, FilterCount, ServingPolicy

    ServingPolicy.objects.update_or_create(pk=1, defaults={"telemetry_enabled": True})
    now = timezone.now()
    rows = [
        CompletionRecord(
            completion_id=f"old{i}",
            created_at=now - timedelta(days=10),
            dialect="openai",
            model="hearth-micro-test",
            language="go",
            latency_ms=40.0,
            outcome="ok",
        )
        for i in range(1500)
    ]
    rows += [
        CompletionRecord(
            completion_id=f"new{i}",
            created_at=now - timedelta(hours=1),
            dialect="tabby",
            model="v3",
            language="python",
            latency_ms=20.0 + i,
            outcome="ok",
        )
        for i in range(3)
    ]
    CompletionRecord.objects.bulk_create(rows)
    for i in range(2):
        CompletionEvent.objects.create(completion_id=f"new{i}", kind="view")
    CompletionEvent.objects.create(completion_id="new0", kind="select")
    FilterCount.objects.create(day=(now - timedelta(days=10)).date(), name="email", count=1234)
    FilterCount.objects.create(day=now.date(), name="credential", count=2)


def _section(html: str, anchor: str) -> str:
    start = html.index(anchor)
    return html[start : html.index("</div>", start)]


def test_the_usage_page_shows_the_periods_languages_models_and_filters(admin_client, recorded):
    html = admin_client.get(reverse("admin:inference_completionrecord_usage")).content.decode()
    periods = _section(html, 'id="usage-periods"')
    assert "<td>last 7 days</td><td>3</td><td>2</td><td>1</td><td>50%</td>" in periods
    assert "<td>last 28 days</td><td>1,503</td>" in periods
    assert "<td>go</td><td>0</td><td>–</td><td>– / –</td><td>1,500</td>" in html
    assert "<td>python</td><td>3</td><td>50%</td><td>21 / 22</td><td>3</td>" in html
    assert "<td>v3</td>" in html and "<td>hearth-micro-test</td>" in html
    filters = _section(html, 'id="usage-filters"')
    assert (
        "<td>email</td><td>0</td><td>1,234</td>" in filters
        and "<td>credential</td><td>2</td><td>2</td>" in filters
    )
    assert 'aria-label="requests"' in html  # the daily charts
    assert "Telemetry is off" not in html


def test_with_telemetry_off_the_usage_page_says_nothing_is_recorded(admin_client):
    html = admin_client.get(reverse("admin:inference_completionrecord_usage")).content.decode()
    assert "Telemetry is off: Hearth records no completions." in html
    assert f'href="{reverse("admin:inference_servingpolicy_policies")}">Policies</a>' in html
    assert "No completions recorded in the last 28 days." in html and "<svg class" not in html


def test_the_completion_list_links_to_the_usage_page_instead_of_banners(admin_client, recorded):
    html = admin_client.get(reverse("admin:inference_completionrecord_changelist")).content.decode()
    assert f'href="{reverse("admin:inference_completionrecord_usage")}"' in html
    assert "usage_report" not in html and 'class="messagelist"' not in html  # no green banners
    # The dashboard's usage card links to it too.
    index = admin_client.get("/admin/").content.decode()
    assert f'href="{reverse("admin:inference_completionrecord_usage")}"' in index


def test_the_usage_page_needs_the_view_permission_on_completion_records(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("lead", password="a-long-password-1", is_staff=True)
    client.force_login(staff)
    url = reverse("admin:inference_completionrecord_usage")
    assert client.get(url).status_code == 403
    index = client.get("/admin/").content.decode()
    assert f'href="{url}"' not in index  # no link to a page it may not open

    staff.user_permissions.add(Permission.objects.get(codename="view_completionrecord"))
    staff = django_user_model.objects.get(pk=staff.pk)  # permissions are cached per user object
    client.force_login(staff)
    assert client.get(url).status_code == 200
    assert f'href="{url}"' in client.get("/admin/").content.decode()
