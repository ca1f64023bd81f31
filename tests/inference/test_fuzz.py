"""Fuzz the live API from its own OpenAPI document (schemathesis): no 5xx, responses match it."""

from __future__ import annotations

import os

import pytest
import requests

pytestmark = pytest.mark.django_db(transaction=True)

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency (pip install -e '.[dev]')")


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
        @hsettings(max_examples=int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "10")), deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck))
        def fuzz(case):
            response = case.call(base_url=hearth, session=session, headers=auth, timeout=60)
            calls.append(response.status_code)
            checks = [not_a_server_error]
            if response.status_code == 200 and response.headers.get("Content-Type", "").startswith("application/json"):
                checks.append(response_schema_conformance)
            case.validate_response(response, checks=checks)

        fuzz()
    assert len(calls) >= 50 and all(code < 500 for code in calls)
