"""Promotion that says what it does: the promote page restates the evaluation (lines better and worse,
the gain with its interval, against what); a version the gate kept is served only with a typed reason,
audited and sent to every admin, and stays flagged on its page and the dashboard until another
promotion; the list action refuses it; a version the gate passed promotes with one click, twice
harmlessly."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from trainer.evaluation.metrics import wilson_interval

pytestmark = pytest.mark.django_db

# 300 held-out lines: the base completes lines 0-29; the candidate misses 0-4 and also completes
# 30-41: 12 lines better, 5 worse, +7 lines in 300.
BASE = [1] * 30 + [0] * 270
CANDIDATE = [0] * 5 + [1] * 37 + [0] * 258


def _line_score(hits: list[int]) -> dict:
    n = len(hits)
    return {
        "prefix": {
            "tasks": n,
            "exact_match": sum(hits) / n,
            "exact_match_ci95": list(wilson_interval(sum(hits), n)),
            "edit_similarity": 0.5,
            "hits": hits,
        }
    }


def _metrics(served_gguf: str = "", **hits: list[int]) -> dict:
    models = {
        label: {"line_completion": _line_score(h), "perplexity": {"perplexity": 9.0}}
        for label, h in hits.items()
    }
    if served_gguf:
        models["served"]["gguf"] = served_gguf
    return {"mode": "prefix", "tasks": len(BASE), "models": models}


def _action_url(version, action: str = "promote") -> str:
    return reverse("admin:trainer_modelversion_action", args=[version.pk, action])


def _page(client, version) -> str:
    return client.get(reverse("admin:trainer_modelversion_change", args=[version.pk])).content.decode()


def _served_card(client) -> str:
    page = client.get(reverse("admin:index")).content.decode()
    start = page.index("<h2>Served model</h2>")
    return page[start : page.index("<h2>Runs in progress</h2>", start)]


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_promote_page_restates_the_evaluation(admin_client, make_version):
    from trainer.evaluation.services import decision_figures

    loser = make_version(gate_passed=False, metrics=_metrics(base=BASE, candidate=CANDIDATE))
    figures = decision_figures(loser.reports.get())
    assert (figures.wins, figures.losses, figures.tasks, figures.reference) == (12, 5, 300, "base")
    assert figures.gain_points.startswith("+2.3 points (95% interval ")

    text = _text(admin_client.get(_action_url(loser)).content.decode())
    assert "The promotion gate kept this version: it did not beat the model served now." in text
    assert "12 got better, 5 got worse, of 300" in text
    assert f"Gain in exact match {figures.gain_points}" in text
    assert "Compared with the base model, served now" in text
    assert "the base model stops being served" in text


def test_the_reference_is_the_version_served_when_it_was_evaluated(admin_client, make_version):
    served = make_version(gate_passed=True, status="promoted")
    loser = make_version(
        gate_passed=False, metrics=_metrics(served.gguf_path, base=BASE, served=BASE, candidate=CANDIDATE)
    )
    text = _text(admin_client.get(_action_url(loser)).content.decode())
    assert f"Compared with version {served.pk}, served now" in text
    assert f"version {served.pk}, served now, is retired" in text


def test_a_version_never_evaluated_says_so(admin_client, make_version):
    version = make_version(gate_passed=None)
    text = _text(admin_client.get(_action_url(version)).content.decode())
    assert "The promotion gate kept this version: it was never evaluated." in text
    assert 'name="reason"' in admin_client.get(_action_url(version)).content.decode()


def test_a_version_the_gate_kept_is_served_only_with_a_reason_and_stays_flagged(
    admin_client, admin_user, make_version
):
    from appliance.models import AuditEntry, Notification

    loser = make_version(gate_passed=False, metrics=_metrics(base=BASE, candidate=CANDIDATE))
    page = admin_client.get(_action_url(loser)).content.decode()
    assert '<textarea name="reason"' in page and "Yes, promote against the gate" in page

    answer = admin_client.post(_action_url(loser), {"reason": "   "})
    assert answer.status_code == 200  # the same page, the error beside the field
    html = answer.content.decode()
    row = html[html.index('<div class="form-row errors">') :]
    assert "Give a reason" in row[: row.index("</textarea>")]
    loser.refresh_from_db()
    assert (
        loser.status == "candidate" and not AuditEntry.objects.filter(action__startswith="version.").exists()
    )

    reason = "the team lead wants the new naming everywhere"
    answer = admin_client.post(_action_url(loser), {"reason": reason}, follow=True)
    loser.refresh_from_db()
    assert loser.status == "promoted" and loser.override_reason == reason and loser.served_against_gate
    entry = AuditEntry.objects.get(action="version.promote_override")
    assert entry.actor == admin_user.get_username() and reason in entry.detail and entry.ip == "127.0.0.1"
    assert Notification.objects.filter(title__contains=f"Version {loser.pk} is served", body__contains=reason)
    assert "served now against the promotion gate" in answer.content.decode()

    flag = f"Served against the promotion gate: {reason} — by {admin_user.get_username()} at "
    version_page = _text(_page(admin_client, loser))
    assert flag in version_page
    assert "Gate verdict at evaluation: Not promoted" in version_page
    assert "Now: served to every developer" in version_page
    assert "kept as a candidate" not in version_page
    assert flag in _text(_served_card(admin_client))


def test_promoting_another_version_clears_the_flag(admin_client, make_version):
    from trainer.versions import model_version_promote

    loser = make_version(gate_passed=False, metrics=_metrics(base=BASE, candidate=CANDIDATE))
    winner = make_version(gate_passed=True)
    model_version_promote(version=loser, reason="a trial week", actor="ana")
    assert "Served against the promotion gate" in _served_card(admin_client)

    assert admin_client.post(_action_url(winner)).status_code == 302
    loser.refresh_from_db()
    winner.refresh_from_db()
    assert winner.status == "promoted" and loser.status == "retired" and not loser.served_against_gate
    assert "Served against the promotion gate" not in _served_card(admin_client)
    assert "Served against the promotion gate" not in _page(admin_client, loser)
    assert "Roll back to this version against the gate (needs a reason)" in _page(admin_client, loser)


def test_the_list_action_refuses_a_version_the_gate_kept(admin_client, make_version):
    from appliance.models import AuditEntry

    loser = make_version(gate_passed=False, metrics=_metrics(base=BASE, candidate=CANDIDATE))
    winner = make_version(gate_passed=True)
    answer = admin_client.post(
        reverse("admin:trainer_modelversion_changelist"),
        {"action": "promote", "_selected_action": [loser.pk, winner.pk], "index": 0},
        follow=True,
    )
    html = answer.content.decode()
    loser.refresh_from_db()
    winner.refresh_from_db()
    assert loser.status == "candidate" and winner.status == "promoted"
    assert f"Version {loser.pk}: not promoted — the promotion gate kept it" in html
    assert f'<a href="{_action_url(loser)}">its promote page</a>' in html
    assert not AuditEntry.objects.filter(action="version.promote_override").exists()

    # Alone, the kept version is refused as well: nothing is promoted silently.
    admin_client.post(
        reverse("admin:trainer_modelversion_changelist"),
        {"action": "promote", "_selected_action": [loser.pk], "index": 0},
    )
    loser.refresh_from_db()
    assert loser.status == "candidate"


def test_a_version_the_gate_passed_promotes_with_one_click(admin_client, make_version):
    from appliance.models import AuditEntry

    winner = make_version(gate_passed=True, metrics=_metrics(base=CANDIDATE, candidate=BASE))
    page = admin_client.get(_action_url(winner)).content.decode()
    assert "The promotion gate passed this version" in page and "<textarea" not in page
    assert "Promote (serve)" in _page(admin_client, winner) and "against the gate" not in _page(
        admin_client, winner
    )

    assert admin_client.post(_action_url(winner)).status_code == 302
    winner.refresh_from_db()
    assert winner.status == "promoted" and winner.override_reason == ""
    # A double submit: the second POST says it is served already, and changes and audits nothing.
    again = admin_client.post(_action_url(winner), follow=True)
    assert again.status_code == 200 and f"Version {winner.pk} is served already." in again.content.decode()
    winner.refresh_from_db()
    assert winner.status == "promoted"
    assert AuditEntry.objects.filter(action="model.promote").count() == 1
    assert not AuditEntry.objects.filter(action="version.promote_override").exists()
    assert "Served against the promotion gate" not in _served_card(admin_client)
