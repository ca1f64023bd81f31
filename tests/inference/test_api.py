"""The OpenAI surface without an engine: auth and validation answer with JSON, never a 500."""

from __future__ import annotations

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


@pytest.mark.parametrize("body,param", [
    ({}, "prompt"),
    ({"prompt": 3}, "prompt"),
    ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 1.5}, "max_tokens"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "stop": [1, 2]}, "stop"),
    ({"prompt": "x", "n": 99}, "n"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
])
def test_invalid_fields_get_400_naming_the_field(client, token, body, param):
    r = _post(client, body, token=token)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


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

    code = ("import os, sys; os.environ['DJANGO_SETTINGS_MODULE']='appliance.settings'; import django; django.setup();"
            "import appliance.urls, inference.api.openai, webui.admin; print('torch' in sys.modules, 'llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
