"""The canary page: start a canary for a share of developers from a version's page, refuse absurd
shares beside the field, ask a reason against the gate, show the live comparison on the page and the
dashboard, roll back."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _url(version) -> str:
    return reverse("admin:trainer_modelversion_canary", args=[version.pk])


def test_start_a_canary_from_the_version_page(admin_client, make_version):
    from trainer.versions import canary_version

    version = make_version(gate_passed=True)
    page = admin_client.get(reverse("admin:trainer_modelversion_change", args=[version.pk])).content.decode()
    assert "Try on a share of developers first" in page and _url(version) in page
    confirm = admin_client.get(reverse("admin:trainer_modelversion_action", args=[version.pk, "promote"]))
    assert "try it on a share of developers first" in confirm.content.decode()

    text = _text(admin_client.get(_url(version)).content.decode())
    assert (
        "Serve it to a share of developers first" in text
        and 'value="10"' in admin_client.get(_url(version)).content.decode()
    )
    r = admin_client.post(_url(version), {"percent": "1000", "start": "1"})
    assert r.status_code == 200 and "less than or equal to 99" in r.content.decode()
    assert canary_version() is None
    r = admin_client.post(_url(version), {"percent": "20", "start": "1"}, follow=True)
    assert "is served to 20% of developers" in r.content.decode()
    assert canary_version() == version
    text = _text(r.content.decode())
    assert "served to 20% of developers" in text
    assert "Not known: no acceptance was reported for either model yet" in text
    assert 'id="canary-rollback"' in r.content.decode() and "Promote to everyone" in text

    version_page = _text(
        admin_client.get(reverse("admin:trainer_modelversion_change", args=[version.pk])).content.decode()
    )
    assert "a canary: served to 20% of developers. Not known: no acceptance was reported" in version_page
    dashboard = _text(admin_client.get(reverse("admin:index")).content.decode())
    assert f"Canary: version {version.pk} for 20% of developers" in dashboard

    r = admin_client.post(_url(version), {"rollback": "1"}, follow=True)
    assert "rolled back; every developer gets the served model" in r.content.decode()
    assert canary_version() is None


def test_a_version_the_gate_kept_needs_a_reason(admin_client, make_version):
    from trainer.versions import canary_version

    version = make_version(gate_passed=False)
    r = admin_client.post(_url(version), {"percent": "10", "start": "1"})
    assert "say why developers should try it" in r.content.decode() and canary_version() is None
    admin_client.post(_url(version), {"percent": "10", "reason": "the platform team asked", "start": "1"})
    assert canary_version() == version


def test_one_canary_at_a_time_and_only_candidates(admin_client, make_version):
    from trainer.versions import model_version_canary_start

    first, second = make_version(gate_passed=True), make_version(gate_passed=True)
    model_version_canary_start(version=first, percent=10)
    text = _text(admin_client.get(_url(second)).content.decode())
    assert f"Version {first.pk} is the canary now" in text and "Start the canary" not in text
    served = make_version(gate_passed=True, status="promoted")
    text = _text(admin_client.get(_url(served)).content.decode())
    assert "served to everyone already" in text


def test_the_dashboard_says_when_no_client_reports_acceptance(admin_client):
    from inference.models import CompletionRecord, ServingPolicy

    ServingPolicy.objects.update_or_create(pk=1, defaults={"telemetry_enabled": True})
    CompletionRecord.objects.create(
        completion_id="c1", dialect="openai", model="m", latency_ms=10, outcome="ok", suggestion="x"
    )
    text = _text(admin_client.get(reverse("admin:index")).content.decode())
    assert "no events reported" in text and "0%" not in text.split("Per model")[1][:300]
    assert "No client reported which suggestions were shown or accepted" in text
