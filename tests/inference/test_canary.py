"""The canary: a candidate served to a share of developers beside the served model, chosen per user,
compared on what they accept, promoted to everyone or rolled back."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pytest

from tests.inference.conftest import model_version_make

# ------------------------------------------------------------------ who is in the share


def test_each_user_keeps_one_arm_and_a_larger_share_only_adds_users():
    from inference.canary import canary_bucket, in_canary

    users = range(1, 2001)
    buckets = {u: canary_bucket(u, 7) for u in users}
    assert buckets == {u: canary_bucket(u, 7) for u in users}  # stable
    at10 = {u for u in users if in_canary(u, 7, 10)}
    at30 = {u for u in users if in_canary(u, 7, 30)}
    assert at10 < at30
    assert 0.07 < len(at10) / len(users) < 0.13 and 0.26 < len(at30) / len(users) < 0.34
    # another canary draws another share (not always the same developers first)
    assert at10 != {u for u in users if in_canary(u, 8, 10)}


def test_wilson_interval_and_the_two_proportion_test():
    from inference.canary import acceptance_compare, wilson_interval

    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(30, 100)
    assert 0.21 < low < 0.22 and 0.39 < high < 0.40
    better = acceptance_compare((60, 100), (30, 100))
    assert better.verdict == "better" and better.p_value < 0.001
    assert better.interval[0] > 0 and "Better" in better.sentence and "60 of 100" in better.sentence
    assert acceptance_compare((30, 100), (60, 100)).verdict == "worse"
    close = acceptance_compare((32, 100), (30, 100))
    assert close.verdict == "unknown" and close.interval[0] < 0 < close.interval[1]
    assert "Not known yet" in close.sentence
    low, high = acceptance_compare((8, 8), (2, 8)).interval  # small counts: still within ±100%
    assert 0 < low < 0.75 < high <= 1
    none = acceptance_compare((0, 0), (0, 0))
    assert none.verdict == "no-events" and "no acceptance was reported" in none.sentence


# ------------------------------------------------------------------ the services


@pytest.fixture
def candidate(micro_base, tmp_path):
    gguf = tmp_path / "v.gguf"
    shutil.copy(micro_base.gguf_path, gguf)
    return model_version_make(base=micro_base, gguf_path=str(gguf))


def test_a_canary_needs_a_candidate_a_sane_share_and_a_reason_against_the_gate(
    candidate, micro_base, tmp_path
):
    from appliance.errors import HearthError
    from appliance.models import AuditEntry
    from trainer.versions import (
        PromotionNeedsReason,
        canary_version,
        model_version_canary_end,
        model_version_canary_start,
    )

    for bad in (0, 100, -5, 1000):
        with pytest.raises(HearthError, match="from 1 to 99"):
            model_version_canary_start(version=candidate, percent=bad)
    candidate.gate_passed = False
    candidate.save()
    with pytest.raises(PromotionNeedsReason, match="reason"):
        model_version_canary_start(version=candidate, percent=10)
    model_version_canary_start(
        version=candidate, percent=10, reason="try it on the platform team", actor="ann"
    )
    assert canary_version() == candidate and candidate.canary_started_at is not None
    started = candidate.canary_started_at
    model_version_canary_start(version=candidate, percent=25, reason="more", actor="ann")
    candidate.refresh_from_db()
    assert (
        candidate.canary_percent == 25 and candidate.canary_started_at == started
    )  # same users, more of them

    gguf = tmp_path / "w.gguf"
    shutil.copy(micro_base.gguf_path, gguf)
    other = model_version_make(base=micro_base, gguf_path=str(gguf))
    with pytest.raises(HearthError, match=f"Version {candidate.pk} is the canary now"):
        model_version_canary_start(version=other, percent=10)

    model_version_canary_end(version=candidate, actor="ann")
    assert canary_version() is None
    actions = list(
        AuditEntry.objects.filter(target=f"version {candidate.pk}").values_list("action", "detail")
    )
    assert ("version.canary", "0% → 10% of developers; reason: try it on the platform team") in actions
    assert ("version.canary_rollback", "was served to 25% of developers") in actions


def test_promoting_the_canary_serves_it_to_everyone(candidate):
    from trainer.models import ModelVersion
    from trainer.versions import canary_version, model_version_canary_start, model_version_promote

    model_version_canary_start(version=candidate, percent=20)
    model_version_promote(version=candidate)
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.PROMOTED and candidate.canary_percent == 0
    assert canary_version() is None


def test_the_check_notifies_once_when_the_answer_becomes_significant(candidate):
    from appliance.models import Notification
    from inference.canary import canary_check
    from inference.models import CompletionEvent, CompletionRecord
    from trainer.versions import model_version_canary_start

    assert canary_check() == "no canary"
    model_version_canary_start(version=candidate, percent=50)

    def served(n: int, arm: str, accepted: int) -> None:
        for i in range(n):
            cid = f"{arm}-{CompletionRecord.objects.count()}"
            CompletionRecord.objects.create(
                completion_id=cid, dialect="tabby", model="m", latency_ms=5, outcome="ok", arm=arm
            )
            CompletionEvent.objects.create(completion_id=cid, kind="view")
            if i < accepted:
                CompletionEvent.objects.create(completion_id=cid, kind="select")

    served(10, "canary", 3)
    served(10, "served", 3)
    assert canary_check() == "unknown" and not Notification.objects.exists()
    served(30, "canary", 3)  # the canary's rate falls to 6 of 40
    served(30, "served", 25)  # the served model's rises to 28 of 40
    assert canary_check() == "worse"
    assert canary_check() == "worse"
    note = Notification.objects.get()
    assert note.title == f"Canary version {candidate.pk}: developers accept its suggestions less"
    assert note.level == "error" and "Promote it to everyone or roll it back" in note.body
    candidate.refresh_from_db()
    assert candidate.canary_verdict == "worse"


# ------------------------------------------------------------------ through the real API and engine


def _tabby(base_url: str, token: str, prefix: str) -> dict:
    body = {"language": "python", "segments": {"prefix": prefix, "suffix": "\n", "filepath": "app/x.py"}}
    request = urllib.request.Request(
        f"{base_url}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def _event(base_url: str, token: str, kind: str, completion_id: str) -> None:
    request = urllib.request.Request(
        f"{base_url}/v1/events",
        data=json.dumps({"type": kind, "completion_id": completion_id}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).read()


def _until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def developers(n: int, version_pk: int, percent: int) -> tuple[list[str], list[str]]:
    """Tokens of developers in the canary's share and out of it (n of each)."""
    from inference.auth import token_create
    from inference.canary import in_canary

    inside, outside = [], []
    for i in range(200):
        row, raw = token_create(username=f"dev{i}")
        (inside if in_canary(row.user_id, version_pk, percent) else outside).append(raw)
        if len(inside) >= n and len(outside) >= n:
            return inside[:n], outside[:n]
    raise AssertionError("not enough developers on each side")


@pytest.mark.django_db(transaction=True)
def test_a_canary_answers_its_share_and_rolls_back(hearth, engine_live, candidate):
    from inference.canary import canary_comparison
    from inference.models import CompletionRecord
    from inference.policy import policy_get
    from trainer.versions import model_version_canary_end, model_version_canary_start

    policy = policy_get()
    policy.telemetry_enabled = True
    policy.save()
    model_version_canary_start(version=candidate, percent=50)
    _until(lambda: engine_live.health()["canary"] and engine_live.health()["canary"].get("model"))
    assert engine_live.health()["canary"]["percent"] == 50
    inside, outside = developers(2, candidate.pk, 50)

    for token in inside + outside:
        for i in range(2):
            cid = _tabby(hearth, token, f"def f{i}():\n    return ")["id"]
            _event(hearth, token, "view", cid)
            if token in inside:
                _event(hearth, token, "select", cid)
    rows = CompletionRecord.objects.all()
    assert {(r.arm, r.model_version) for r in rows} == {("canary", candidate.pk), ("served", None)}
    assert rows.filter(arm="canary").count() == 4
    candidate.refresh_from_db()
    figures, comparison = canary_comparison(candidate)
    assert (figures["canary"]["accepted"], figures["canary"]["viewed"]) == (4, 4)
    assert (figures["served"]["accepted"], figures["served"]["viewed"]) == (0, 4)
    assert comparison.verdict == "better"

    model_version_canary_end(version=candidate)
    _until(lambda: engine_live.health()["canary"] is None)
    cid = _tabby(hearth, inside[0], "def g():\n    return ")["id"]
    assert CompletionRecord.objects.get(completion_id=cid).arm == "served"


@pytest.mark.django_db(transaction=True)
def test_promoting_the_canary_moves_its_slots_without_a_second_load(hearth, engine_live, candidate):
    from trainer.versions import model_version_canary_start, model_version_promote

    model_version_canary_start(version=candidate, percent=30)
    _until(lambda: (engine_live.health()["canary"] or {}).get("model"))
    swaps = engine_live.swaps
    loaded = engine_live.canary.pool
    model_version_promote(version=candidate)
    _until(lambda: engine_live.health()["version"] == candidate.pk)
    assert engine_live.pool is loaded and engine_live.swaps == swaps + 1
    assert engine_live.health()["canary"] is None
    _, outside = developers(1, candidate.pk, 30)
    assert _tabby(hearth, outside[0], "x = ")["id"]


def test_the_command_starts_shows_and_rolls_back_a_canary(candidate):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from trainer.versions import canary_version

    out = StringIO()
    with pytest.raises(CommandError, match="not a canary"):
        call_command("model_canary", str(candidate.pk), stdout=out)
    with pytest.raises(CommandError, match="from 1 to 99"):
        call_command("model_canary", str(candidate.pk), "--percent", "150", stdout=out)
    call_command("model_canary", str(candidate.pk), "--percent", "15", stdout=out)
    assert canary_version() == candidate
    call_command("model_canary", str(candidate.pk), stdout=out)
    sentence, figures = out.getvalue().strip().splitlines()[-2:]
    assert sentence.startswith("Not known: no acceptance was reported")
    assert json.loads(figures)["percent"] == 15 and json.loads(figures)["verdict"] == "no-events"
    call_command("model_canary", str(candidate.pk), "--rollback", stdout=out)
    assert canary_version() is None


@pytest.mark.django_db(transaction=True)
def test_a_canary_that_cannot_load_is_reported_and_gets_its_chance_again(
    hearth, engine_live, candidate, micro_base
):
    from pathlib import Path

    from inference.models import CompletionRecord
    from inference.policy import policy_get
    from trainer.versions import model_version_canary_end, model_version_canary_start

    policy = policy_get()
    policy.telemetry_enabled = True
    policy.save()
    good = Path(candidate.gguf_path).read_bytes()
    Path(candidate.gguf_path).write_bytes(b"GGUF not really")
    model_version_canary_start(version=candidate, percent=99)
    _until(lambda: (engine_live.health()["canary"] or {}).get("error"))
    assert engine_live.health()["canary"]["version"] == candidate.pk
    inside, _ = developers(1, candidate.pk, 99)
    cid = _tabby(hearth, inside[0], "x = ")["id"]
    assert CompletionRecord.objects.get(completion_id=cid).arm == "served"  # the served model answered

    model_version_canary_end(version=candidate)
    _until(lambda: engine_live.health()["canary"] is None)
    Path(candidate.gguf_path).write_bytes(good)
    model_version_canary_start(version=candidate, percent=99)
    _until(lambda: (engine_live.health()["canary"] or {}).get("model"))
