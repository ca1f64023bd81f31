"""Fuzz the live API from its own OpenAPI document (schemathesis): no 5xx, responses match it."""

from __future__ import annotations

import json
import os

import pytest
import requests

pytestmark = pytest.mark.django_db(transaction=True)

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is a dev dependency (pip install -e '.[dev]')"
)


def test_openapi_fuzzing_finds_no_server_error(hearth, raw_token, settings):
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hsettings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    settings.HEARTH_RATE_LIMIT = 0  # the fuzzer is one token firing hundreds of requests
    doc = requests.get(f"{hearth}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    auth = {"Authorization": f"Bearer {raw_token}"}
    session = requests.Session()
    calls = []

    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE)

        @given(case=strategy)
        @hsettings(
            max_examples=int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "10")),
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            response = case.call(base_url=hearth, session=session, headers=auth, timeout=60)
            calls.append(response.status_code)
            checks = [not_a_server_error]
            if response.status_code == 200 and response.headers.get("Content-Type", "").startswith(
                "application/json"
            ):
                checks.append(response_schema_conformance)
            case.validate_response(response, checks=checks)

        fuzz()
    assert len(calls) >= 50 and all(code < 500 for code in calls)


NESTED = '{"prompt": "x", "deep": ' + "[" * 50_000 + "]" * 50_000 + "}"
# Bodies schemathesis cannot produce: numbers that are not standard JSON, absurd nesting, a huge prompt.
EXPLICIT = [
    ("/v1/completions", '{"prompt": "x", "max_tokens": NaN}', 400, "max_tokens"),
    ("/v1/completions", '{"prompt": "x", "max_tokens": Infinity}', 400, "max_tokens"),
    ("/v1/completions", '{"prompt": "x", "max_tokens": 1e400}', 400, "max_tokens"),
    ("/v1/completions", '{"prompt": "x", "top_p": 0}', 400, "top_p"),
    ("/completion", '{"prompt": "x", "n_predict": -1e400}', 400, "n_predict"),
    ("/infill", '{"input_prefix": "x", "temperature": NaN}', 400, "temperature"),
    ("/v1/completions", '{"segments": {"prefix": "x"}, "temperature": -Infinity}', 400, "temperature"),
    ("/v1/completions", NESTED, 400, None),
    ("/v1/completions", json.dumps({"prompt": "x" * 2_000_000}), 413, "prompt"),
    (
        "/infill",
        json.dumps({"input_prefix": "x" * 200_000, "input_suffix": "y" * 100_000}),
        413,
        "input_prefix",
    ),
]


@pytest.mark.parametrize("path,body,status,param", EXPLICIT, ids=[f"{p} {b[:40]}" for p, b, _, _ in EXPLICIT])
def test_non_standard_bodies_get_a_4xx_naming_the_field(hearth, raw_token, path, body, status, param):
    r = requests.post(
        f"{hearth}{path}",
        data=body,
        timeout=60,
        headers={"Authorization": f"Bearer {raw_token}", "Content-Type": "application/json"},
    )
    assert r.status_code == status, r.text[:300]
    assert r.json()["error"]["param"] == param


def test_the_openapi_document_states_the_prompt_limit(hearth):
    doc = requests.get(f"{hearth}/openapi.json", timeout=10).json()
    for path in ("/v1/completions", "/infill", "/completion"):
        assert "413" in doc["paths"][path]["post"]["responses"]
