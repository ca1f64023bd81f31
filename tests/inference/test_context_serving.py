"""Repository context at serving time, on a live Hearth (real index, engine and HTTP): a version
served as "tuned+context" gets snippets of its dataset's other files; the current file, excluded
files, the policy switch, a plain "tuned" version and a missing index all leave the prompt as sent."""

from __future__ import annotations

import logging
import shutil
import time

import pytest
import requests

from tests.inference.conftest import model_version_make

pytestmark = pytest.mark.django_db(transaction=True)

FILES = [
    {
        "repo": "r",
        "path": "pay/ledger.py",
        "language": "python",
        "text": "def ledger_balance(account_id):\n    return sum_entries(account_id, kind='credit')\n",
    },
    {
        "repo": "r",
        "path": "ui/colors.py",
        "language": "python",
        "text": "def palette_pick(theme):\n    return THEMES[theme]['primary_color']\n",
    },
    {
        "repo": "r",
        "path": "app/secrets/vault.py",
        "language": "python",
        "text": "def vault_token(user):\n    return VAULT_MASTER + user.name\n",
    },
    {
        "repo": "r",
        "path": "web/Page.ts",
        "language": "typescript",
        "text": "export function renderPage(theme: string) {\n  return palette_pick(theme);\n}\n",
    },
]


def _policy(**fields):
    from inference.models import ServingPolicy

    ServingPolicy.objects.update_or_create(pk=1, defaults={"flow_logs_enabled": True, **fields})


@pytest.fixture
def served(hearth, micro_base, engine_live, tmp_path):
    """A promoted version served as "tuned+context" whose dataset has a real code index of FILES."""
    from appliance import paths
    from trainer.context.index import index_build
    from trainer.versions import model_version_promote

    gguf = shutil.copy(micro_base.gguf_path, tmp_path / "custom.gguf")
    version = model_version_make(base=micro_base, gguf_path=str(gguf))
    version.served_arm = "tuned+context"
    version.save(update_fields=["served_arm"])
    index_build(paths.context_index_path(version.run.dataset_id), FILES)
    model_version_promote(version=version)
    deadline = time.monotonic() + 20
    while engine_live.health()["model"] != f"hearth-v{version.pk}" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine_live.health()["model"] == f"hearth-v{version.pk}"
    _policy()
    return version


def _complete(hearth: str, token: str, prompt: str, filepath: str, **extra) -> tuple[int, dict]:
    """(prompt tokens, the request's "context" flow-log step)."""
    from inference.models import FlowLog

    body = {"prompt": prompt, "max_tokens": 1, "temperature": 0, "filepath": filepath, **extra}
    r = requests.post(
        f"{hearth}/v1/completions", headers={"Authorization": f"Bearer {token}"}, json=body, timeout=60
    )
    assert r.status_code == 200, r.text
    log = FlowLog.objects.filter(path="/v1/completions").latest("created_at")
    step = next(s for s in log.steps if s["step"] == "context")
    return r.json()["usage"]["prompt_tokens"], step


LEDGER = "def statement(account_id):\n    b = ledger_balance(account_id)\n    return b"


def test_a_version_served_with_context_gets_another_files_snippet_and_the_switch_turns_it_off(
    served, hearth, raw_token
):
    with_context, step = _complete(hearth, raw_token, LEDGER, "pay/statement.py")
    assert step["retrieved"] == 1 and step["sent"] == 1 and step["retrieval_ms"] >= 0

    _policy(repository_context=False)
    plain, step = _complete(hearth, raw_token, LEDGER, "pay/statement.py")
    assert step == {**step, "retrieved": 0, "sent": 0, "skipped": "policy"}
    # The snippet (a path line and two lines of code) really reached the prompt.
    assert with_context > plain + 10

    _policy(repository_context=True)
    again, step = _complete(hearth, raw_token, LEDGER, "pay/statement.py")
    assert again == with_context and step["sent"] == 1


def test_the_current_file_is_never_its_own_context(served, hearth, raw_token):
    prompt = "def audit(kind):\n    return sum_entries(0, kind=kind)\n    "  # only pay/ledger.py has these
    for filepath in ("pay/ledger.py", "/home/dev/proj/pay/ledger.py", "file:///home/dev/proj/pay/ledger.py"):
        _, step = _complete(hearth, raw_token, prompt, filepath)
        assert step["retrieved"] == 0, filepath
    _, step = _complete(hearth, raw_token, prompt, "pay/audit.py")
    assert step["retrieved"] == 1  # the same cursor in another file does get it


def test_an_excluded_files_snippet_never_reaches_the_prompt(served, hearth, raw_token):
    prompt = "def login(user):\n    token = vault_token(user)\n    "  # only app/secrets/vault.py matches
    baseline, step = _complete(hearth, raw_token, prompt, "app/login.py")
    assert step["sent"] == 1
    _policy(exclusion_globs="**/secrets/**")
    tokens, step = _complete(hearth, raw_token, prompt, "app/login.py")
    assert step["retrieved"] == 0 and step["sent"] == 0
    _policy(repository_context=False, exclusion_globs="**/secrets/**")
    plain, _ = _complete(hearth, raw_token, prompt, "app/login.py")
    assert tokens == plain < baseline


def test_snippets_are_of_the_files_language_and_the_clients_own_come_last(served, hearth, raw_token):
    from inference.models import FlowLog

    prompt = "def pick(theme):\n    color = palette_pick(theme)\n    "
    _, step = _complete(hearth, raw_token, prompt, "ui/main.py")
    assert step["retrieved"] == 1  # ui/colors.py, never the TypeScript file that also names it
    # The client already sent that very chunk (llama.vscode's input_extra): nothing is added twice.
    chunk = FILES[1]["text"].strip("\n")
    r = requests.post(
        f"{hearth}/infill",
        headers={"Authorization": f"Bearer {raw_token}"},
        timeout=60,
        json={
            "input_prefix": prompt,
            "input_suffix": "\n",
            "filename": "ui/main.py",
            "n_predict": 1,
            "input_extra": [{"filename": "ui/colors.py", "text": chunk + "\n\nMORE = 1\n"}],
        },
    )
    assert r.status_code == 200
    steps = FlowLog.objects.filter(path="/infill").latest("created_at").steps
    step = next(s for s in steps if s["step"] == "context")
    assert step["retrieved"] == 1 and step["sent"] == 0


def test_a_version_served_without_context_gets_none(served, hearth, raw_token):
    from inference.policy import serving_rules

    served.served_arm = "tuned"
    served.save(update_fields=["served_arm"])
    assert not serving_rules().served.serves_context
    tuned, step = _complete(hearth, raw_token, LEDGER, "pay/statement.py")
    assert step == {**step, "retrieved": 0, "sent": 0, "skipped": "served model"}
    served.served_arm = "tuned+context"
    served.save(update_fields=["served_arm"])
    with_context, step = _complete(hearth, raw_token, LEDGER, "pay/statement.py")
    assert step["sent"] == 1 and with_context > tuned


TWO_REPOS = [
    {
        "repo": "pay-service",
        "path": "money.py",
        "language": "python",
        "text": "def ledger_balance(account_id):\n    return pay_service_total(account_id)\n",
    },
    {
        "repo": "ui-kit",
        "path": "money.py",
        "language": "python",
        "text": "def ledger_balance(account_id):\n    return ui_kit_total(account_id)\n",
    },
]


def test_snippets_come_from_the_requests_own_repository_when_the_client_names_it(served, hearth, raw_token):
    """A model trained on two repositories: Tabby's git URL (or a checkout folder in the file's path)
    picks the one the developer is in; without either, both are searched."""
    from appliance import paths
    from inference.context import context_retrieve, request_repository
    from inference.models import FlowLog
    from inference.policy import serving_rules, serving_rules_clear
    from trainer.context.index import index_build
    from trainer.models import Repository

    index_file = paths.context_index_path(served.run.dataset_id)
    index_file.unlink()
    index_build(index_file, TWO_REPOS)
    for name in ("pay-service", "ui-kit"):
        Repository.objects.create(name=name, source=f"/srv/git/{name}.git").datasets.add(served.run.dataset)
    serving_rules_clear()
    rules = serving_rules()
    assert [n for n, _ in rules.served.repositories] == ["pay-service", "ui-kit"]

    prompt = "def statement(account_id):\n    b = ledger_balance(account_id)\n    "
    for hint, expected in (
        ({"git_url": "https://git.example.internal/team/ui-kit.git"}, "ui-kit"),
        ({"git_url": "git@git.example.internal:team/pay-service.git"}, "pay-service"),
        ({"filepath": "/home/dev/src/ui-kit/app/statement.py"}, "ui-kit"),
        ({"filepath": "file:///home/dev/pay-service/statement.py"}, "pay-service"),
        ({"git_url": "https://git.example.internal/team/other.git", "filepath": "app/statement.py"}, ""),
    ):
        repository = request_repository(rules.served, **hint)
        assert repository == expected, hint
        texts = [
            t
            for _, t in context_retrieve(
                rules.served,
                prefix=prompt,
                filepath=hint.get("filepath", "app/statement.py"),
                language="python",
                globs=[],
                repository=repository,
            )
        ]
        wanted = {"ui-kit": ["ui_kit_total"], "pay-service": ["pay_service_total"], "": ["pay_", "ui_kit"]}
        assert all(any(w in t for t in texts) for w in wanted[expected]), (hint, texts)
        if expected:
            other = "pay_service_total" if expected == "ui-kit" else "ui_kit_total"
            assert not any(other in t for t in texts), (hint, texts)

    r = requests.post(
        f"{hearth}/v1/completions",
        headers={"Authorization": f"Bearer {raw_token}"},
        timeout=60,
        json={
            "language": "python",
            "segments": {
                "prefix": prompt,
                "suffix": "\n",
                "filepath": "app/statement.py",
                "git_url": "https://git.example.internal/team/ui-kit.git",
            },
        },
    )
    assert r.status_code == 200, r.text
    steps = FlowLog.objects.filter(path="/v1/completions").latest("created_at").steps
    step = next(s for s in steps if s["step"] == "context")
    assert step["repository"] == "ui-kit" and step["retrieved"] == 1
    serving_rules_clear()


def test_snippets_chosen_for_a_version_that_would_not_load_are_dropped_by_the_engine(
    hearth, micro_base, engine_live, raw_token, tmp_path
):
    """The database says "tuned+context", but its GGUF is broken and the engine serves the base: the
    base was never measured with those snippets, so the engine drops them (the client's stay)."""
    from appliance import paths
    from inference.models import FlowLog
    from trainer.context.index import index_build
    from trainer.versions import model_version_promote

    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\0" * 64)
    broken = model_version_make(base=micro_base, gguf_path=str(corrupt))
    broken.served_arm = "tuned+context"
    broken.save(update_fields=["served_arm"])
    index_build(paths.context_index_path(broken.run.dataset_id), FILES)
    model_version_promote(version=broken)
    deadline = time.monotonic() + 20
    while engine_live.failed_version != broken.pk and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine_live.health()["model"] == "hearth-micro-test"
    _policy()

    tokens, step = _complete(hearth, raw_token, LEDGER, "pay/statement.py")
    assert step["sent"] == 1  # the gateway follows the database and retrieves for the version...
    engine = next(s for s in FlowLog.objects.latest("created_at").steps if s["step"] == "engine")
    assert engine["model"] == "hearth-micro-test" and engine["context_dropped"] == 1  # ...the engine not
    _policy(repository_context=False)
    plain, _ = _complete(hearth, raw_token, LEDGER, "pay/statement.py")
    assert tokens == plain


def test_an_engine_request_keeps_retrieved_snippets_only_for_the_version_they_were_chosen_for():
    from inference.engine.request import EngineRequest, EngineRequestError

    req = EngineRequest(
        user="u", prefix="x", context=(("r.py", "r = 1"), ("c.py", "c = 2")), retrieved=1, retrieved_for=7
    )
    assert req.served_by(7) == (req, 0)
    kept, dropped = req.served_by(None)
    assert dropped == 1 and kept.context == (("c.py", "c = 2"),) and kept.retrieved == 0
    assert EngineRequest.from_json(req.to_json()) == req
    for bad in ({"retrieved": 3}, {"retrieved": -1}, {"retrieved": True}, {"retrieved_for": "7"}):
        with pytest.raises(EngineRequestError) as err:
            EngineRequest.from_json({**req.to_json(), **bad})
        assert err.value.field == next(iter(bad))


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_index_still_serves_and_warns_once(
    served, hearth, raw_token, caplog, monkeypatch, damage
):
    from appliance import paths
    from inference import context

    monkeypatch.setattr(context, "_warned", set())
    index_file = paths.context_index_path(served.run.dataset_id)
    index_file.unlink()
    if damage == "corrupt":
        index_file.write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="inference.context"):
        for _ in range(2):
            _, step = _complete(hearth, raw_token, LEDGER, "pay/statement.py")
            assert step["retrieved"] == 0 and step["sent"] == 0
    warnings = [r for r in caplog.records if r.name == "inference.context"]
    assert len(warnings) == 1 and f"dataset {served.run.dataset_id}" in warnings[0].getMessage()


def test_the_served_version_lookup_is_cached_with_the_serving_rules(
    served, settings, django_assert_num_queries
):
    from inference.policy import serving_rules, serving_rules_clear

    settings.HEARTH_POLICY_CACHE_S = 60
    serving_rules_clear()
    first = serving_rules().served
    assert (first.version_pk, first.serves_context, first.dataset_pk) == (
        served.pk,
        True,
        served.run.dataset_id,
    )
    with django_assert_num_queries(0):
        assert serving_rules().served == first
    serving_rules_clear()


def test_merge_puts_the_clients_snippets_last_and_stays_within_the_limits():
    from inference.context import context_merge
    from inference.engine.request import MAX_CONTEXT_ITEMS, MAX_PROMPT_CHARS, EngineRequest

    client = [("a.py", "def a():\n    pass")]
    retrieved = [("far.py", "far = 1"), ("a.py", "def a():"), ("near.py", "near = 2")]  # best last
    assert context_merge(client, retrieved, prefix="x", suffix=None) == [
        ("far.py", "far = 1"),
        ("near.py", "near = 2"),
        *client,
    ]
    assert context_merge([], [("n.py", "n"), ("n.py", "n")], prefix="", suffix="") == [("n.py", "n")]

    full = [(f"c{i}.py", "c") for i in range(MAX_CONTEXT_ITEMS - 1)]
    merged = context_merge(full, retrieved, prefix="x", suffix=None)
    assert merged == [("near.py", "near = 2"), *full]  # room for one: the best one
    EngineRequest(user="u", prefix="x", context=tuple(merged))

    prefix = "p" * (MAX_PROMPT_CHARS - len("far.py") - len("far = 1") - 1)
    merged = context_merge([], [("far.py", "far = 1"), ("near.py", "near = 2")], prefix=prefix, suffix="s")
    assert merged == [("far.py", "far = 1")]  # the best one is too long; the next one just fits
    EngineRequest(user="u", prefix=prefix, suffix="s", context=tuple(merged))
