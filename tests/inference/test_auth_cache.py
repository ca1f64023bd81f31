"""The web process keeps a token that authenticated for HEARTH_AUTH_CACHE_S: a keystroke costs no
token query, a revocation here is at once, one made elsewhere counts within the cache time, and the
rate limit still counts every request."""

from __future__ import annotations

import os
import time

import pytest
from django.utils import timezone

from inference.auth import AuthError, token_authenticate, token_create, token_revoke
from inference.models import ApiToken


@pytest.fixture
def inline(settings):
    settings.HEARTH_DEFERRED_WRITES = False  # the usage write is one query, made inline
    settings.HEARTH_AUTH_CACHE_S = 60
    settings.HEARTH_RATE_LIMIT = 0


@pytest.mark.django_db
def test_a_cached_token_costs_no_lookup(inline, django_assert_num_queries):
    _, raw = token_create(username="ada")
    with django_assert_num_queries(2):  # the token (with its user), the usage write
        token_authenticate(f"Bearer {raw}")
    with django_assert_num_queries(1):  # the usage write only
        token_authenticate(f"Bearer {raw}")


@pytest.mark.django_db
def test_no_cache_when_the_setting_is_zero(inline, settings, django_assert_num_queries):
    settings.HEARTH_AUTH_CACHE_S = 0
    _, raw = token_create(username="ada")
    token_authenticate(f"Bearer {raw}")
    with django_assert_num_queries(2):
        token_authenticate(f"Bearer {raw}")


@pytest.mark.django_db
def test_a_revocation_in_this_process_is_at_once(inline):
    token, raw = token_create(username="ada")
    token_authenticate(f"Bearer {raw}")
    token_revoke(token=token)
    with pytest.raises(AuthError, match="revoked"):
        token_authenticate(f"Bearer {raw}")


def _revoke_elsewhere(token):
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())


def _disable_elsewhere(token):
    type(token.user).objects.filter(pk=token.user_id).update(is_active=False)


@pytest.mark.django_db
@pytest.mark.parametrize("change,status", [(_revoke_elsewhere, 401), (_disable_elsewhere, 403)])
def test_a_change_made_elsewhere_counts_once_the_cache_time_is_over(inline, settings, change, status):
    token, raw = token_create(username="ada")
    token_authenticate(f"Bearer {raw}")
    change(token)  # another web process revokes it or disables its user: this one's cache does not hear
    token_authenticate(f"Bearer {raw}")  # still within the cache time
    settings.HEARTH_AUTH_CACHE_S = 0.05
    time.sleep(0.1)
    with pytest.raises(AuthError) as caught:
        token_authenticate(f"Bearer {raw}")
    assert caught.value.status == status


@pytest.mark.django_db
def test_the_rate_limit_counts_every_request_served_from_the_cache(inline):
    token, raw = token_create(username="ada")
    ApiToken.objects.filter(pk=token.pk).update(rate_limit_per_minute=3)
    for _ in range(3):
        token_authenticate(f"Bearer {raw}")
    with pytest.raises(AuthError) as caught:
        token_authenticate(f"Bearer {raw}")
    assert caught.value.status == 429
    assert ApiToken.objects.get(pk=token.pk).rate_count == 4


@pytest.mark.django_db
def test_the_rate_limit_counts_when_the_row_is_read_again(inline, settings):
    """A row loaded after some of this process's requests were written is not counted twice."""
    token, raw = token_create(username="ada")
    ApiToken.objects.filter(pk=token.pk).update(rate_limit_per_minute=4)
    settings.HEARTH_AUTH_CACHE_S = 0.05
    for _ in range(4):
        token_authenticate(f"Bearer {raw}")
        time.sleep(0.06)  # every request reads the row again
    with pytest.raises(AuthError) as caught:
        token_authenticate(f"Bearer {raw}")
    assert caught.value.status == 429


@pytest.mark.django_db(transaction=True)
def test_one_usage_write_covers_a_typists_keystrokes(settings):
    """Deferred writes (the default): the token's usage is written once for the requests of
    HEARTH_USAGE_FLUSH_S, not once a keystroke, and none of them goes uncounted."""
    from inference.writer import deferred_flush, writer

    settings.HEARTH_DEFERRED_WRITES = True
    # A delayed write is due at the next multiple of its delay on the monotonic clock; with a delay
    # of 30 s a run that crossed such a boundary wrote early. Nothing is due here until flushed.
    settings.HEARTH_USAGE_FLUSH_S = 1e12
    settings.HEARTH_RATE_LIMIT = 0
    token, raw = token_create(username="ada")
    assert deferred_flush()
    before = writer.written
    for _ in range(5):
        token_authenticate(f"Bearer {raw}")
    assert ApiToken.objects.get(pk=token.pk).rate_count == 0  # still waiting for its turn
    assert deferred_flush()
    assert writer.written == before + 1
    row = ApiToken.objects.get(pk=token.pk)
    assert row.rate_count == 5 and row.last_used_at is not None
    settings.HEARTH_USAGE_FLUSH_S = 0  # the next keystroke is written on its own, and counted on
    token_authenticate(f"Bearer {raw}")
    assert deferred_flush()
    assert writer.written == before + 2 and ApiToken.objects.get(pk=token.pk).rate_count == 6


def test_a_process_that_exits_writes_what_was_waiting(tmp_path):
    """A web worker stopped (SIGTERM, a restart) still commits the usage it had not written yet."""
    import subprocess
    import sys
    from pathlib import Path

    mark = tmp_path / "written"
    code = (
        "import django; django.setup()\n"
        "from pathlib import Path\n"
        "from inference.writer import deferred\n"
        f"deferred(lambda: Path({str(mark)!r}).write_text('ok'), delay_s=3600)\n"
    )
    env = {
        **os.environ,
        "HEARTH_HOME": str(tmp_path / "home"),
        "DJANGO_SETTINGS_MODULE": "appliance.settings",
        "HEARTH_DEFERRED_WRITES": "1",
    }
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True, timeout=60)
    assert mark.read_text() == "ok"


@pytest.mark.django_db(transaction=True)  # the writer commits on its own connection
def test_a_huge_flush_interval_is_a_long_wait_not_a_dead_writer(settings):
    """HEARTH_USAGE_FLUSH_S past what a thread can wait for (an operator's 1e12) once raised
    OverflowError in the writer thread, which died with every write queued behind it."""
    from inference.writer import DeferredWriter

    settings.HEARTH_DEFERRED_WRITES = True
    writer, done = DeferredWriter(), []
    writer.submit(lambda: done.append(1), delay_s=1e12)
    time.sleep(0.2)  # the thread is waiting for the write's turn
    assert writer._thread.is_alive()
    assert writer.flush(timeout=5) and done == [1]
