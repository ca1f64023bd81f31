"""Content exclusion, response filters and the verbatim index, without an engine."""

from __future__ import annotations

import random
import string
import time

import pytest

from appliance.fields import path_excluded
from inference.filters import VerbatimIndex, response_filter, suggestion_filter


@pytest.mark.parametrize(
    "path,globs,excluded",
    [
        ("src/secrets/keys.py", ["**/secrets/**"], True),
        ("/home/dev/repo/secrets/keys.py", ["secrets/*.py"], True),
        ("file:///repo/config/prod.pem", ["*.pem"], True),
        ("C:\\repo\\.env", [".env"], True),
        ("C:\\Repo\\Secrets\\x.py", ["**/secrets/**"], True),
        ("certs/KEY.PEM", ["*.pem"], True),
        ("file:///home/a/my%20keys/id.py", ["my keys/"], True),
        ("src/app.py", ["**/secrets/**", "*.pem"], False),
        ("", ["*"], False),
        ("src/app.py", [], False),
    ],
)
def test_path_exclusion_globs(path, globs, excluded):
    assert path_excluded(path, globs) is excluded


@pytest.mark.parametrize(
    "text,name,kept",
    [
        ("send_to(\n    'ops@example.com')", "email", "send_to(\n"),
        ("url = 'https://intranet.corp/api'\n", "url", ""),
        ("x = 1\nhost = '10.1.2.3'\n", "ip", "x = 1\n"),
        ("addr = 'fe80::1ff:fe23:4567:890a'", "ip", ""),
        ("key = 'AKIAIOSFODNN7EXAMPLE'", "credential", ""),
        ('a = 1\npassword = "hunter2hunter2"\n', "credential", "a = 1\n"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "credential", ""),
        ("token: ghp_abcdefghijklmnopqrstuvwxyz0123456789", "credential", ""),
    ],
)
def test_response_filters_truncate_before_the_match(text, name, kept):
    out = response_filter(text)
    assert name in out.acted
    assert out.text == kept


def test_response_filters_leave_plain_code_alone():
    code = "def add(a, b):\n    return a + b  # version 1.2.3\n"
    assert response_filter(code).acted == [] and response_filter(code).text == code


def _code(n: int, seed: int) -> str:
    rnd = random.Random(seed)
    return "".join(rnd.choice(string.ascii_letters + "   \n(){}=+") for _ in range(n))


def test_verbatim_discards_150_shared_chars_and_ignores_whitespace():
    corpus = _code(5000, seed=1)
    index = VerbatimIndex([corpus, _code(3000, seed=2)])
    stripped = "".join(corpus.split())
    chunk = stripped[1000:1150]  # exactly 150 non-space characters from the corpus
    respaced = "\n    ".join(chunk[i : i + 7] for i in range(0, len(chunk), 7))
    assert index.matches("prefix" + respaced + "suffix")
    assert not index.matches(stripped[1000:1149])  # 149 is allowed
    assert not index.matches(_code(2000, seed=3))
    out = suggestion_filter(respaced, index=index)
    assert out.discarded and out.acted == ["verbatim"] and out.text == ""


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def test_verbatim_index_is_fast_on_a_large_corpus():
    """Timed side by side with a yardstick on the same host (ratios a loaded host slows alike), never
    against the clock: the build costs a few Python sorts of the corpus, a check a sliver of the build,
    and a check against ten times the corpus about the same as against a tenth of it."""
    corpus = [_code(200_000, seed=s) for s in range(5)]  # ~1 MB of blocked code
    tenth = [text[:20_000] for text in corpus]
    probes = [_code(400, seed=100 + seed) for seed in range(50)]
    large, small = VerbatimIndex(corpus), VerbatimIndex(tenth)
    assert len(large) > 900_000

    text = "".join(corpus)
    sort = build = check_large = check_small = float("inf")
    for _ in range(3):  # interleaved, so a burst of load falls on every side
        sort = min(sort, _seconds(lambda: sorted(text)))
        build = min(build, _seconds(lambda: VerbatimIndex(corpus)))
        check_small = min(check_small, _seconds(lambda: [small.matches(p) for p in probes]))
        check_large = min(check_large, _seconds(lambda: [large.matches(p) for p in probes]))
    # Measured about 7 sorts; a Python loop per window, or a quadratic build, is hundreds.
    assert build < 50 * sort, (build, sort)
    # 50 checks measured ~1/50 of the build; one that scanned the corpus would cost a build's worth.
    assert check_large < build / 10, (check_large, build)
    assert check_large < 4 * check_small, (check_large, check_small)  # searched, not scanned


# Provider formats the dataset scrubber's rules know and the old credential pattern did not; in a
# call, not an assignment, so nothing but the provider rule can see them.
_PROVIDER_KINDS = [
    "pypi-upload-token",
    "slack-app-level-token",
    "npm-access-token",
    "dockerhub-pat",
    "stripe-secret-key",
    "databricks-token",
    "digitalocean-pat",
    "grafana-service-account-token",
    "postman-api-key",
    "sourcegraph-access-token",
    "hashicorp-vault-service-token",
    "shopify-access-token",
]


@pytest.mark.parametrize("kind", _PROVIDER_KINDS)
def test_response_filter_cuts_the_scrubbers_provider_tokens(kind):
    from benchmarks.secret_corpus import examples

    _, value = examples([kind], seed=3)[kind]
    text = f'x = 1\nclient = Client("{value}")\ny = 2\n'
    out = response_filter(text)
    assert "credential" in out.acted
    assert out.text == "x = 1\n" and value not in out.text


def test_response_filter_leaves_ordinary_django_code_alone():
    from pathlib import Path

    import django

    root = Path(django.__file__).resolve().parent
    for name in ("contrib/auth/hashers.py", "core/signing.py", "middleware/csrf.py"):
        code = (root / name).read_text()
        body = code[code.index("\nclass ") :][:4000]  # past the module docstring's URLs and names
        body = "\n".join(line for line in body.splitlines() if "://" not in line and "@" not in line)
        assert "credential" not in response_filter(body).acted, name
