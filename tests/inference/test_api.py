"""The OpenAI surface without an engine: auth and validation answer with JSON, never a 500."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def token(db):
    from inference.auth import token_create

    return token_create(username="alice")[1]


def _post(client, body, token=None, raw=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else body
    return client.post("/v1/completions", data=data, content_type="application/json", **headers)


@pytest.mark.django_db
def test_missing_and_unknown_tokens_get_401_json(client):
    r = _post(client, {"prompt": "x"})
    assert r.status_code == 401 and "bearer" in r.json()["error"]["message"].lower()
    r = _post(client, {"prompt": "x"}, token="hth_" + "a" * 40)
    assert r.status_code == 401 and r.json()["error"]["message"] == "Invalid token."


@pytest.mark.parametrize(
    "body,param",
    [
        ({}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 1.5}, "max_tokens"),
        ({"prompt": "x", "temperature": "hot"}, "temperature"),
        ({"prompt": "x", "stop": [1, 2]}, "stop"),
        ({"prompt": "x", "n": 99}, "n"),
        ({"prompt": "x", "stream": "yes"}, "stream"),
    ],
)
def test_invalid_fields_get_400_naming_the_field(client, token, body, param):
    r = _post(client, body, token=token)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("kind", [{"view": True}, ["view"], 3, None, "viewed"])
def test_tabby_event_of_the_wrong_type_gets_400(client, token, kind):
    # Found by the schemathesis run: a dict as `type` was a 500 (unhashable in the set lookup).
    r = client.post(
        "/v1/events",
        data={"type": kind, "completion_id": "c"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "type"


def test_malformed_json_and_non_object(client, token):
    assert _post(client, None, token=token, raw="{oops").status_code == 400
    assert _post(client, None, token=token, raw="[1, 2]").status_code == 400


def test_engine_down_is_503_with_instructions(client, token, settings):
    settings.HEARTH_ENGINE_PORT = 9  # nothing listens on the discard port
    r = _post(client, {"prompt": "def f():"}, token=token)
    assert r.status_code == 503 and "inference_serve" in r.json()["error"]["message"]


@pytest.mark.django_db
def test_token_stored_hashed_and_revocable():
    from inference.auth import AuthError, token_authenticate, token_create, token_revoke
    from inference.models import ApiToken

    row, raw = token_create(username="bob")
    assert raw not in (row.digest, row.prefix) and len(raw) >= 40
    assert ApiToken.objects.filter(digest=ApiToken.hash(raw)).exists()
    assert token_authenticate(f"Bearer {raw}").pk == row.pk
    token_revoke(token=row)
    with pytest.raises(AuthError, match="revoked"):
        token_authenticate(f"Bearer {raw}")


def test_importing_the_web_tier_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE']='appliance.settings'; import django; django.setup();"
        "import appliance.urls, inference.api.openai, webui.admin; print('torch' in sys.modules, 'llama_cpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


@pytest.mark.django_db
def test_expired_revoked_disabled_and_rate_limited_tokens_get_json_errors(client, settings):
    from datetime import timedelta

    from django.utils import timezone

    from inference.auth import token_create, token_revoke

    def events(raw):
        return client.post(
            "/v1/events",
            data={"type": "view", "completion_id": "c"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )

    _, expired = token_create(username="e", expires_at=timezone.now() - timedelta(seconds=1))
    r = events(expired)
    assert r.status_code == 401 and r.json()["error"]["message"] == "This token has expired."
    row, revoked = token_create(username="r")
    token_revoke(token=row)
    assert events(revoked).status_code == 401
    row, disabled = token_create(username="d")
    row.user.is_active = False
    row.user.save()
    r = events(disabled)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"

    row, limited = token_create(username="busy")
    row.rate_limit_per_minute = 3
    row.save()
    assert [events(limited).status_code for _ in range(3)] == [200, 200, 200]
    r = events(limited)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(r["Retry-After"]) <= 60
    _, other = token_create(username="calm")
    assert events(other).status_code == 200  # limits are per token


def test_response_filters_cut_suggestions_and_are_counted(client, token, monkeypatch):
    from inference.api import serving
    from inference.engine.result import EngineChoice, EngineResult, StreamDelta, StreamDone, Timings
    from inference.models import FilterCount
    from inference.policy import serving_rules_clear

    serving_rules_clear()
    suggestion = "    notify('ops@example.com')\n    return 1\n"

    def answer(text: str) -> EngineResult:
        timings = Timings(prompt_n=3, prompt_ms=1, predicted_n=9, predicted_ms=1)
        choice = EngineChoice(0, text, "stop", prompt_tokens=3, completion_tokens=9, timings=timings)
        return EngineResult(choices=(choice,), model="m")

    def fake_complete(params, timeout=120.0):
        return answer(suggestion)

    def fake_stream(params, timeout=120.0):
        for piece in ("    x = 1\n", "    notify('ops@", "example.com')\n"):
            yield StreamDelta(piece)
        final = "    x = 1\n    notify('ops@example.com')\n"
        yield StreamDone(answer(final), streamed=final)

    monkeypatch.setattr(serving, "engine_complete", fake_complete)
    monkeypatch.setattr(serving, "engine_stream", fake_stream)
    r = _post(client, {"prompt": "def f():\n"}, token=token)
    choice = r.json()["choices"][0]
    assert choice["text"] == "" and choice["finish_reason"] == "content_filter"
    r = _post(client, {"prompt": "def f():\n", "stream": True}, token=token)
    body = b"".join(r.streaming_content).decode()
    assert "ops@" not in body and "x = 1" in body and '"content_filter"' in body
    assert FilterCount.objects.get(name="email").count == 2


def test_every_url_is_in_the_openapi_document(client):
    from django.urls import URLPattern

    from inference.api.openapi import openapi_document
    from inference.api.urls import urlpatterns

    doc = client.get("/openapi.json").json()
    assert doc == json_roundtrip(openapi_document())
    for pattern in urlpatterns:
        assert isinstance(pattern, URLPattern)
        route = "/" + str(pattern.pattern)
        assert route in doc["paths"], f"{route} is served but missing from the OpenAPI document"
    assert len(doc["paths"]) == len(urlpatterns)


def json_roundtrip(value):
    import json

    return json.loads(json.dumps(value))


@pytest.mark.django_db
def test_admin_reads_usage_figures_and_edits_the_policy(admin_client):
    from django.core.management import call_command

    from inference.models import CompletionEvent, CompletionRecord

    for i, (lang, latency) in enumerate([("python", 40.0), ("python", 60.0), ("go", 90.0)]):
        CompletionRecord.objects.create(
            completion_id=f"c{i}",
            dialect="tabby",
            model="hearth-v1",
            language=lang,
            latency_ms=latency,
            outcome="ok",
        )
    CompletionEvent.objects.create(completion_id="c0", kind="view")
    CompletionEvent.objects.create(completion_id="c1", kind="view")
    CompletionEvent.objects.create(completion_id="c1", kind="select")
    page = admin_client.get("/admin/inference/completionrecord/")
    assert page.status_code == 200 and b"/admin/inference/completionrecord/usage/" in page.content
    assert admin_client.get("/admin/inference/completionrecord/usage/").status_code == 200
    assert admin_client.get("/admin/inference/blockedcode/").status_code == 200
    from io import StringIO

    out = StringIO()
    call_command("usage_report", "--days", "1", stdout=out)
    report = json.loads(out.getvalue())
    assert (
        report["by_language"]["python"]["requests"] == 2
        and report["by_language"]["go"]["latency_ms_p50"] == 90.0
    )
    assert report["by_model"]["hearth-v1"]["acceptance_rate"] == 0.5
