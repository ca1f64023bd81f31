"""The notifications inbox: an unread badge in every admin page's header, the inbox newest first
with levels, marking read per item and all at once, each admin's read state their own."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

INBOX = "/admin/appliance/notification/inbox/"


def _badge(client, url: str = "/admin/") -> int | None:
    html = client.get(url).content.decode()
    assert 'id="hearth-inbox-link"' in html
    found = re.search(r'<span class="hearth-badge"[^>]*>(\d+)</span>', html)
    return int(found.group(1)) if found else None


@pytest.fixture
def admins(client, django_user_model):
    from django.contrib.auth.models import Permission
    from django.test import Client

    alice = django_user_model.objects.create_superuser("alice", "alice@hearth.invalid", "pw-alice-12345")
    bob = django_user_model.objects.create_user("bob", password="pw-bob-123456", is_staff=True)
    bob.user_permissions.add(Permission.objects.get(codename="view_notification"))  # the inbox needs it
    a, b = Client(), Client()
    a.force_login(alice)
    b.force_login(bob)
    return a, b


def test_unread_count_on_every_page_drops_as_notes_are_read(admins):
    from appliance.models import Notification
    from appliance.notifications import notify

    a, _ = admins
    assert _badge(a) is None
    first = notify(title="Run 1 finished", body="Version 1 is a candidate.", level=Notification.Level.SUCCESS)
    notify(title="Run 2 failed", body="Out of memory.", level=Notification.Level.ERROR)
    notify(title="Version 1 promoted")
    for url in ("/admin/", "/admin/appliance/auditentry/", "/admin/trainer/repository/add/", INBOX):
        assert _badge(a, url) == 3, url

    html = a.get(INBOX).content.decode()
    titles = re.findall(r"<strong>(Run 1 finished|Run 2 failed|Version 1 promoted)</strong>", html)
    assert titles == ["Version 1 promoted", "Run 2 failed", "Run 1 finished"]  # newest first
    assert "hearth-level-error" in html and "hearth-level-success" in html and "Out of memory." in html

    r = a.post(f"/admin/appliance/notification/{first.pk}/read/")
    assert r.status_code == 302 and r.url == INBOX
    assert _badge(a) == 2
    assert a.get(f"/admin/appliance/notification/{first.pk}/read/").status_code == 405  # POST only
    a.post("/admin/appliance/notification/inbox/read-all/")
    assert _badge(a) is None and "Nothing unread." in a.get(INBOX).content.decode()


def test_each_admin_has_their_own_read_state(admins):
    from appliance.notifications import notify

    a, b = admins
    note = notify(title="Run 3 finished")
    notify(title="Run 4 finished")
    a.post("/admin/appliance/notification/inbox/read-all/")
    assert _badge(a) is None and _badge(b) == 2
    b.post(f"/admin/appliance/notification/{note.pk}/read/")
    assert _badge(b) == 1 and _badge(a) is None
    notify(title="Run 5 failed")
    assert _badge(a) == 1 and _badge(b) == 2


def test_non_staff_users_have_no_inbox(client, django_user_model):
    from appliance.notifications import notify

    note = notify(title="Run 6 finished")
    user = django_user_model.objects.create_user("dev", password="pw-dev-1234567")
    client.force_login(user)
    assert client.get(INBOX).status_code == 302
    client.post("/admin/appliance/notification/inbox/read-all/")
    assert not note.reads.exists()
