"""Content exclusion cannot be sidestepped: whatever shape a path arrives in (upper case, a Windows
path, a file:// URI with percent-encoding, `./` and `..`, mixed slashes), an excluded file gets no
completion on any route, is never context, and its text is in no row of the database."""

from __future__ import annotations

import json

import pytest
import requests

from tests.inference.test_context_serving import _complete, served  # noqa: F401 (a fixture)

GLOBS = "**/secrets/**\n*.pem\n**/my keys/**\ndeploy/prod.env"

# Each names an excluded file, and each slipped past the case-sensitive, undecoded matching.
HOSTILE = [
    "App/SECRETS/keys.py",  # upper case
    "certs/KEY.PEM",
    "C:\\Repo\\Secrets\\x.py",  # a Windows path
    "file:///home/a/my%20keys/id.py",  # a URI with %20
    "file:///c%3A/repo/secret%73/a.py",  # a URI with a %3A drive and an encoded letter
    "./deploy/tmp/../prod.env",  # ./ and ..
    "deploy\\tmp/..\\prod.env",  # mixed slashes and ..
    "certs/key.pem.",  # Windows ignores a trailing dot
]


@pytest.mark.parametrize("path", HOSTILE)
def test_every_hostile_shape_of_an_excluded_path_matches(path):
    from appliance.fields import glob_lines, path_excluded

    assert path_excluded(path, glob_lines(GLOBS))


@pytest.mark.parametrize(
    "path,globs,excluded",
    [
        ("src/app.py", GLOBS, False),
        ("secrets/../app.py", GLOBS, False),  # `..` leaves the folder
        ("file:///home/a/keys/id.py", GLOBS, False),
        ("deploy/prod.env.example", GLOBS, False),
        ("..", "*", False),  # names no file
        ("a/Secrets/b.py", "SECRETS", True),  # a folder's name covers what is in it
        ("a/secrets/b.py", "secrets/", True),
        ("A/Secrets/b.py", "a\\secrets\\**", True),  # a glob typed with backslashes
        ("vscode-remote://ssh-remote%2Bbox/home/a/Secrets/x.py", GLOBS, True),
        ("\\\\?\\C:\\Repo\\Secrets\\a.py", GLOBS, True),
        ("file:///home/a/%2e%2e/secrets/x.py", GLOBS, True),
        ("a/" * 64 + "x.py", GLOBS, True),  # deeper than any real path: no cost, no completion
        ("a/" * 64 + "x.py", "", False),
    ],
)
def test_path_exclusion(path, globs, excluded):
    from appliance.fields import glob_lines, path_excluded

    assert path_excluded(path, glob_lines(globs)) is excluded


@pytest.mark.parametrize(
    "path,clean",
    [
        ("file:///c%3A/Repo/my%20keys/a.py", "/Repo/my keys/a.py"),
        ("C:\\Repo\\src\\a.py", "/Repo/src/a.py"),
        ("./src//pkg/./../a.py", "src/a.py"),
        ("../../a.py", "a.py"),  # never above the start
        ("cafe\u0301/a.py", "caf\u00e9/a.py"),  # Unicode NFC
    ],
)
def test_path_normalize(path, clean):
    from appliance.fields import path_normalize

    assert path_normalize(path) == clean


# ---------------------------------------------------------------- every route, on a live Hearth


def _policy(**fields) -> None:
    from inference.models import ServingPolicy
    from inference.policy import serving_rules_clear

    ServingPolicy.objects.update_or_create(pk=1, defaults=fields)
    serving_rules_clear()


@pytest.fixture
def everything_stored(hearth):
    """Telemetry, content and flow logs all on, so that only exclusion keeps a file's text out."""
    _policy(telemetry_enabled=True, telemetry_content=True, flow_logs_enabled=True, exclusion_globs=GLOBS)
    return hearth


def _database_text() -> str:
    """Every row of every table, as text."""
    from django.db import connection

    with connection.cursor() as cursor:
        rows = []
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows.append(repr(cursor.fetchall()))
    return "\n".join(rows)


def _sse_text(r: requests.Response, key: str) -> str:
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    if key == "content":
        return "".join(e.get("content", "") for e in events)
    return "".join(c["text"] for e in events for c in e["choices"])


def _openai(hearth, auth, path, marker, stream=False):
    body = {"prompt": f"key = '{marker}'\n", "max_tokens": 4, "filepath": path, "stream": stream}
    r = requests.post(f"{hearth}/v1/completions", headers=auth, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return _sse_text(r, "choices") if stream else r.json()["choices"][0]["text"]


def _infill(hearth, auth, path, marker, stream=False):
    body = {
        "input_prefix": f"key = '{marker}'\n",
        "input_suffix": "\n",
        "n_predict": 4,
        "filename": path,
        "stream": stream,
    }
    r = requests.post(f"{hearth}/infill", headers=auth, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return _sse_text(r, "content") if stream else r.json()["content"]


def _completion(hearth, auth, path, marker):
    body = {"prompt": f"key = '{marker}'\n", "n_predict": 4, "filepath": path}
    r = requests.post(f"{hearth}/completion", headers=auth, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["content"]


def _tabby(hearth, auth, path, marker):
    body = {
        "language": "python",
        "segments": {"prefix": f"key = '{marker}'\n", "suffix": "\n", "filepath": path},
    }
    r = requests.post(f"{hearth}/v1/completions", headers=auth, json=body, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    for kind in ("view", "select"):  # the IDE's events about that completion
        event = {"type": kind, "completion_id": answer["id"], "choice_index": 0, "view_id": "v1"}
        assert requests.post(f"{hearth}/v1/events", headers=auth, json=event, timeout=10).status_code == 200
    return answer["choices"][0]["text"]


ROUTES = {
    "openai": _openai,
    "openai-stream": lambda *a: _openai(*a, stream=True),
    "infill": _infill,
    "infill-stream": lambda *a: _infill(*a, stream=True),
    "completion": _completion,
    "tabby": _tabby,
}


# What the live tests send: a path that always matched (the streamed answers still logged its text),
# then every hostile shape. Each gets its own marker in its text.
SENT = {path: f"EXCLUDED{i}_" + "q" * 10 for i, path in enumerate(["app/secrets/plain.py", *HOSTILE])}


def _leaked() -> list[str]:
    """The paths whose marker is in some row of the database."""
    stored = _database_text()
    return [path for path, marker in SENT.items() if marker in stored]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ROUTES)
def test_an_excluded_file_gets_no_completion_and_its_text_is_stored_nowhere(
    everything_stored, raw_token, engine_live, route
):
    ask = ROUTES[route]
    auth = {"Authorization": f"Bearer {raw_token}"}
    completed = []  # the paths that got a completion, or reached the engine at all
    for path, marker in SENT.items():
        before = engine_live.scheduler.stats["requests"]
        text = ask(everything_stored, auth, path, marker)
        if text or engine_live.scheduler.stats["requests"] != before:
            completed.append(path)
    assert {"completed": completed, "stored": _leaked()} == {"completed": [], "stored": []}
    # The same request for a file not excluded is served and stored: the search above can find text.
    before = engine_live.scheduler.stats["requests"]
    ask(everything_stored, auth, "src/app.py", "ALLOWED_" + "z" * 10)
    assert engine_live.scheduler.stats["requests"] == before + 1
    assert "ALLOWED_" + "z" * 10 in _database_text()


def _infill_extra(hearth, auth, path, marker):
    body = {
        "input_prefix": "def f():\n    ",
        "input_suffix": "\n",
        "n_predict": 1,
        "filename": "src/app.py",
        "input_extra": [{"filename": path, "text": f"key = '{marker}'\n"}] if marker else [],
    }
    r = requests.post(f"{hearth}/infill", headers=auth, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["tokens_evaluated"]


def _tabby_declaration(hearth, auth, path, marker):
    segments = {"prefix": "def f():\n    ", "suffix": "\n", "filepath": "src/app.py"}
    if marker:
        segments["declarations"] = [{"filepath": path, "body": f"key = '{marker}'\n"}]
    r = requests.post(
        f"{hearth}/v1/completions",
        headers=auth,
        json={"language": "python", "segments": segments},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ["infill", "tabby"])
def test_an_excluded_file_sent_as_context_never_reaches_the_engine_or_the_database(
    everything_stored, raw_token, route
):
    from inference.models import FlowLog

    auth = {"Authorization": f"Bearer {raw_token}"}
    url = "/infill" if route == "infill" else "/v1/completions"
    send = _infill_extra if route == "infill" else _tabby_declaration
    plain = send(everything_stored, auth, "", "")
    used = []  # the paths whose snippet went to the engine
    for path, marker in SENT.items():
        answer = send(everything_stored, auth, path, marker)
        steps = FlowLog.objects.filter(path=url).latest("created_at").steps
        exclusion = next(s for s in steps if s["step"] == "exclusion")
        # /infill answers how many tokens the engine evaluated: the prompt without the snippet's.
        if exclusion["context_dropped"] != 1 or (route == "infill" and answer != plain):
            used.append(path)
    assert {"used": used, "stored": _leaked()} == {"used": [], "stored": []}


@pytest.mark.django_db(transaction=True)
def test_an_excluded_files_snapshot_is_not_stored(everything_stored, raw_token):
    auth = {"Authorization": f"Bearer {raw_token}"}
    url = f"{everything_stored}/v1/telemetry/snapshots"
    answers = {}
    for i, (path, marker) in enumerate(SENT.items()):
        body = {"completion_id": f"cmpl-{i}", "text": f"key = '{marker}'\n", "filepath": path}
        r = requests.post(url, headers=auth, json=body, timeout=10)
        assert r.status_code == 200
        answers[path] = r.json()
    # The answer is the one a client gets with content off.
    assert {"stored": _leaked(), "answers": [p for p, a in answers.items() if a != {"stored": False}]} == {
        "stored": [],
        "answers": [],
    }
    body = {"completion_id": "cmpl-ok", "text": "ALLOWED_" + "z" * 10, "filepath": "src/app.py"}
    r = requests.post(url, headers=auth, json=body, timeout=10)
    assert r.json() == {"stored": True} and "ALLOWED_" + "z" * 10 in _database_text()


@pytest.mark.django_db(transaction=True)
def test_a_request_refused_before_serving_keeps_no_excluded_text_in_the_flow_log(
    everything_stored, raw_token
):
    auth = {"Authorization": f"Bearer {raw_token}"}
    for path, marker in SENT.items():
        body = {"prompt": f"key = '{marker}'\n", "filepath": path, "n": 99}  # 400: n is out of range
        r = requests.post(f"{everything_stored}/v1/completions", headers=auth, json=body, timeout=10)
        assert r.status_code == 400
    assert _leaked() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("globs", ["**/SECRETS/**", "App\\Secrets\\", "APP/secrets"])
def test_repository_context_never_comes_from_an_excluded_path(
    served,  # noqa: F811 (the fixture imported above)
    hearth,
    raw_token,
    globs,
):
    from inference.models import FlowLog, ServingPolicy
    from inference.policy import serving_rules_clear

    prompt = "def login(user):\n    token = vault_token(user)\n    "  # only app/secrets/vault.py matches
    _, step = _complete(hearth, raw_token, prompt, "app/login.py")
    assert step["sent"] == 1
    ServingPolicy.objects.filter(pk=1).update(exclusion_globs=globs)
    serving_rules_clear()
    _, step = _complete(hearth, raw_token, prompt, "app/login.py")
    assert step["retrieved"] == 0 and step["sent"] == 0
    # An excluded current file is not even used to look for context.
    r = requests.post(
        f"{hearth}/v1/completions",
        headers={"Authorization": f"Bearer {raw_token}"},
        json={"prompt": prompt, "max_tokens": 1, "filepath": "file:///C%3A/src/App/Secrets/login.py"},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == ""
    steps = FlowLog.objects.filter(path="/v1/completions").latest("created_at").steps
    assert not any(s["step"] == "context" for s in steps)
