"""Serving security: bad numbers are 4xx naming the field, the engine answers only Hearth's web tier,
and one user cannot learn another's prompt from the shared prompt cache."""

from __future__ import annotations

import http.client
import json

import pytest


def _post(client, path: str, raw: str, token: str):
    return client.post(path, data=raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path,raw,param",
    [
        ("/v1/completions", '{"prompt": "x", "max_tokens": NaN}', "max_tokens"),
        ("/v1/completions", '{"prompt": "x", "max_tokens": Infinity}', "max_tokens"),
        ("/v1/completions", '{"prompt": "x", "max_tokens": 1e400}', "max_tokens"),
        ("/v1/completions", '{"prompt": "x", "temperature": NaN}', "temperature"),
        ("/infill", '{"input_prefix": "x", "n_predict": -1e400}', "n_predict"),
        ("/completion", '{"prompt": "x", "temperature": -Infinity}', "temperature"),
    ],
)
def test_non_finite_numbers_are_400_naming_the_field(client, raw_token, path, raw, param):
    r = _post(client, path, raw, raw_token)
    assert r.status_code == 400, r.content
    assert r.json()["error"]["param"] == param


@pytest.mark.django_db
def test_a_deeply_nested_body_is_400(client, raw_token):
    r = _post(client, "/v1/completions", "[" * 50_000 + "]" * 50_000, raw_token)
    assert r.status_code == 400 and "error" in r.json()


@pytest.mark.django_db
def test_a_prompt_over_the_limit_is_413_naming_the_field(client, raw_token):
    r = _post(client, "/v1/completions", json.dumps({"prompt": "x = 1\n" * 350_000}), raw_token)
    assert r.status_code == 413, r.content
    assert r.json()["error"]["param"] == "prompt"


def test_the_openapi_document_states_the_413():
    from inference.api.openapi import openapi_document

    doc = json.dumps(openapi_document())
    assert '"413"' in doc


def _engine_call(port: int, method: str, path: str, body: dict | None, headers: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(
        method, path, body=data, headers={**headers, **({"Content-Type": "application/json"} if data else {})}
    )
    resp = conn.getresponse()
    payload = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, payload


@pytest.mark.django_db(transaction=True)
def test_the_engine_answers_only_with_the_instance_secret(engine_live, settings):
    from appliance.engine_secret import engine_auth_headers
    from inference.engine.request import EngineRequest

    port = settings.HEARTH_ENGINE_PORT
    body = EngineRequest(user="mallory", prefix="def f():\n").to_json()
    assert _engine_call(port, "POST", "/complete", body, {})[0] == 401
    assert _engine_call(port, "POST", "/complete", body, {"Authorization": "Bearer " + "x" * 43})[0] == 401
    assert _engine_call(port, "GET", "/health", None, {})[0] == 401
    status, payload = _engine_call(port, "POST", "/complete", body, engine_auth_headers())
    assert status == 200 and "choices" in payload
    secret_file = settings.HEARTH_HOME / "engine_secret"
    assert secret_file.stat().st_mode & 0o077 == 0


def test_the_engine_refuses_a_public_address_without_a_configured_secret(settings):
    from appliance.engine_secret import EngineSecretError, engine_bind_check

    settings.HEARTH_ENGINE_SECRET = ""
    with pytest.raises(EngineSecretError, match="beyond loopback"):
        engine_bind_check("0.0.0.0")
    engine_bind_check("127.0.0.1")


def _cached(hearth: str, token: str, prompt: str) -> tuple[int, int]:
    import requests

    r = requests.post(
        f"{hearth}/completion",
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
        json={"prompt": prompt, "n_predict": 2, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return body.get("tokens_cached"), body["timings"]["prompt_n"]


@pytest.mark.django_db(transaction=True)
def test_a_guess_of_another_users_prompt_is_not_told_apart_from_a_wrong_one(
    live_server, micro_base, settings
):
    """One slot, so victim and attacker share it. The victim's prompt cache must not answer the
    attacker's exact guess any faster (in cached tokens) than a wrong guess."""
    import threading

    from inference.auth import token_create
    from inference.engine.server import engine_server_build
    from inference.policy import serving_rules_clear
    from tests.inference.conftest import free_port

    settings.HEARTH_ENGINE_PORT = free_port()
    settings.HEARTH_POLICY_CACHE_S = 0
    serving_rules_clear()
    server, engine = engine_server_build(
        host="127.0.0.1",
        port=settings.HEARTH_ENGINE_PORT,
        n_ctx=512,
        n_threads=1,
        slots=1,
        poll_s=0.2,
        kv_cache_mb=0,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        victim, attacker = token_create(username="victim")[1], token_create(username="attacker")[1]
        secret = "def rotate_keys(vault):\n    api_password = 'hunter2-winter'\n    return vault.store("
        _cached(live_server.url, victim, secret)
        exact = _cached(live_server.url, attacker, secret)
        _cached(live_server.url, victim, secret)
        wrong = _cached(
            live_server.url, attacker, "def rotate_keys(vault):\n    api_password = 'correct-horse'\n"
        )
        assert exact[0] == wrong[0] == 0
        assert exact[1] >= wrong[1] > 0  # every token of the guess was computed afresh
    finally:
        server.shutdown()
        server.server_close()
        engine.stop()


@pytest.mark.django_db(transaction=True)
def test_excluded_or_content_off_text_is_never_stored(hearth, raw_token):
    import requests

    from inference.models import CompletionRecord, FlowLog, ServingPolicy
    from inference.policy import serving_rules_clear

    ServingPolicy.objects.update_or_create(
        pk=1,
        defaults={
            "telemetry_enabled": True,
            "telemetry_content": True,
            "flow_logs_enabled": True,
            "exclusion_globs": "vault/**",
        },
    )
    serving_rules_clear()
    auth = {"Authorization": f"Bearer {raw_token}"}
    marker = "TOPSECRET_" + "q" * 12
    r = requests.post(
        f"{hearth}/v1/completions",
        headers=auth,
        timeout=120,
        json={"prompt": f"key = '{marker}'\n", "max_tokens": 4, "filepath": "vault/keys.py"},
    )
    assert r.status_code == 200
    r = requests.post(
        f"{hearth}/infill",
        headers=auth,
        timeout=120,
        json={
            "input_prefix": "x = 1\n",
            "input_suffix": "",
            "n_predict": 4,
            "filename": "app.py",
            "input_extra": [{"filename": "vault/other.py", "text": marker}],
        },
    )
    assert r.status_code == 200
    stored = [str(v) for v in CompletionRecord.objects.values_list("prompt", "suggestion")]
    stored += [str(s) for s in FlowLog.objects.values_list("steps", flat=True)]
    assert stored and not any(marker in s for s in stored)

    ServingPolicy.objects.filter(pk=1).update(telemetry_content=False)
    serving_rules_clear()
    plain = "ordinary_" + "z" * 10
    r = requests.post(
        f"{hearth}/v1/completions",
        headers=auth,
        timeout=120,
        json={"prompt": f"{plain} = 1\n", "max_tokens": 4, "filepath": "app.py"},
    )
    assert r.status_code == 200
    logs = [str(s) for s in FlowLog.objects.values_list("steps", flat=True)]
    assert len(logs) == 3 and not any(plain in s for s in logs) and "body_withheld" in logs[-1]


@pytest.mark.django_db
def test_rate_limit_zero_blocks_a_token_and_empty_means_the_default(client, settings):
    from inference.auth import token_create

    settings.HEARTH_DEFERRED_WRITES = False
    token, raw = token_create(username="blocked")
    token.rate_limit_per_minute = 0
    token.save()
    r = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert r.status_code == 429 and "blocked" in r.json()["error"]["message"]
    _, other = token_create(username="free")
    settings.HEARTH_RATE_LIMIT = 2
    # A body that fails validation: answered (400) after authentication and counting, without an engine.
    codes = [_post(client, "/v1/completions", '{"prompt": 3}', other).status_code for _ in range(3)]
    assert codes == [400, 400, 429]


@pytest.mark.django_db
def test_invalid_tokens_are_throttled_by_client_address(client, settings):
    from inference.auth import token_create

    settings.HEARTH_API_AUTH_MAX_FAILURES = 3
    codes = [
        client.get("/v1/models", HTTP_AUTHORIZATION="Bearer hth_" + "g" * 43).status_code for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    _, raw = token_create(username="honest")
    assert _post(client, "/v1/completions", '{"prompt": 3}', raw).status_code == 429  # the address waits
    elsewhere = client.post(
        "/v1/completions",
        data='{"prompt": 3}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
        REMOTE_ADDR="10.9.8.7",
    )
    assert elsewhere.status_code == 400


@pytest.mark.django_db
def test_token_create_expires_in(settings):
    import io
    from datetime import timedelta

    from django.core.management import CommandError, call_command
    from django.utils import timezone

    from inference.models import ApiToken

    call_command("token_create", "ann", "--expires-in", "12h", stdout=io.StringIO(), stderr=io.StringIO())
    left = ApiToken.objects.get(user__username="ann").expires_at - timezone.now()
    assert timedelta(hours=11, minutes=59) < left <= timedelta(hours=12)
    with pytest.raises(CommandError, match="30d, 12h or 90m"):
        call_command("token_create", "ann", "--expires-in", "soon")
    settings.HEARTH_TOKEN_DAYS = 0
    call_command("token_create", "bob", stdout=io.StringIO(), stderr=io.StringIO())
    assert ApiToken.objects.get(user__username="bob").expires_at is None  # HEARTH_TOKEN_DAYS=0: never


@pytest.mark.django_db
def test_git_protocol_refused_unless_allowed_and_git_timeout_is_a_setting(settings, tmp_path):
    from appliance.errors import MirrorError
    from trainer.mirrors.git import git
    from trainer.mirrors.services import repository_source_parse

    with pytest.raises(MirrorError, match="git:// sends code unencrypted"):
        repository_source_parse("git://git.corp.internal/team/app.git")
    settings.HEARTH_GIT_ALLOW_INSECURE = True
    assert repository_source_parse("git://git.corp.internal/team/app.git")[0].startswith("git://")
    settings.HEARTH_GIT_TIMEOUT_S = 0.001
    with pytest.raises(MirrorError, match="HEARTH_GIT_TIMEOUT_S"):
        git("init", "-q", str(tmp_path / "slow"))


@pytest.mark.django_db
def test_ready_says_nothing_but_its_status(client, settings):
    from tests.inference.conftest import free_port

    settings.HEARTH_ENGINE_PORT = free_port()  # nothing listens there
    r = client.get("/ready")
    assert r.status_code == 503 and r.json() == {"ready": False}
