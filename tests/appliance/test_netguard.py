"""The network guard refuses non-loopback connections before the system call, and logs them.

No test here sends a packet to a non-loopback address: every such connect happens with the guard
active (asserted first), and the hook raises before the socket reaches the kernel.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import netguard
from appliance.netguard import NetworkGuardError, Policy

ROOT = Path(__file__).resolve().parents[2]
UNROUTED = "10.255.255.1"


@pytest.fixture
def guard(tmp_path):
    """The process's hook with a policy of our own: allows nothing beyond loopback, logs to tmp_path."""
    policy = Policy(log_dir=lambda: tmp_path)
    netguard.guard_install(policy)
    previous_active = netguard.guard_active()
    assert previous_active
    yield tmp_path
    from django.conf import settings

    netguard.guard_configure(
        netguard.policy_from_settings(settings) if settings.HEARTH_NETWORK_GUARD else None
    )


def test_guard_is_on_by_default_in_the_appliance():
    assert netguard.guard_active()


def test_connect_to_a_non_loopback_address_is_refused_and_logged(guard):
    assert netguard.guard_active()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        with pytest.raises(NetworkGuardError, match="10.255.255.1"):
            sock.connect((UNROUTED, 9))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(OSError):
        sock.connect_ex((UNROUTED, 80))
    attempts = netguard.attempts_logged(guard)
    assert [a["host"] for a in attempts] == [UNROUTED, UNROUTED]
    assert attempts[0]["event"] == "socket.connect"
    assert any("test_netguard" in frame for frame in attempts[0]["stack"])


def test_udp_sendto_is_refused(guard):
    assert netguard.guard_active()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(NetworkGuardError):
        sock.sendto(b"x", (UNROUTED, 53))
    assert len(netguard.attempts_logged(guard)) == 1


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_sendmsg_to_an_outside_address_is_refused(guard, kind):
    assert netguard.guard_active()
    with socket.socket(socket.AF_INET, kind) as sock, pytest.raises(NetworkGuardError, match=UNROUTED):
        sock.sendmsg([b"x"], [], 0, (UNROUTED, 53))
    attempts = netguard.attempts_logged(guard)
    assert [(a["event"], a["host"]) for a in attempts] == [("socket.sendmsg", UNROUTED)]


def test_sendmsg_on_loopback_is_allowed(guard):
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        server.bind(("127.0.0.1", 0))
        client.sendmsg([b"x"], [], 0, server.getsockname())
        assert server.recv(10) == b"x"
    assert netguard.attempts_logged(guard) == []


@pytest.mark.parametrize(
    "lookup",
    [
        lambda name: socket.getaddrinfo(name, 443),
        lambda name: socket.gethostbyname(name),
        lambda name: socket.gethostbyname_ex(name),
        lambda name: socket.gethostbyaddr(name),
    ],
    ids=["getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"],
)
def test_dns_lookups_of_outside_names_are_refused_before_any_query(guard, lookup):
    assert netguard.guard_active()
    with pytest.raises(NetworkGuardError, match="outside.invalid"):
        lookup("outside.invalid")
    attempts = netguard.attempts_logged(guard)
    assert len(attempts) == 1 and attempts[0]["host"] == "outside.invalid"
    assert attempts[0]["event"].startswith("socket.get")


def test_reverse_lookups_of_outside_addresses_are_refused(guard):
    with pytest.raises(NetworkGuardError):
        socket.gethostbyaddr(UNROUTED)
    with pytest.raises(NetworkGuardError):
        socket.getnameinfo((UNROUTED, 80), 0)
    assert [a["event"] for a in netguard.attempts_logged(guard)] == [
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    ]


def test_local_lookups_still_work(guard):
    assert {info[4][0] for info in socket.getaddrinfo("localhost", 80)} & {"127.0.0.1", "::1"}
    assert socket.getaddrinfo("127.0.0.1", 80)[0][4][0] == "127.0.0.1"
    assert socket.getaddrinfo(UNROUTED, 80)  # a literal: no query; its connect is what is checked
    assert socket.getaddrinfo(None, 80)  # the wildcard address of a bind
    socket.getfqdn()  # this machine's own name (smtplib and Django's e-mail ask for it)
    assert netguard.attempts_logged(guard) == []


def test_lookups_of_allowed_hosts_pass(tmp_path):
    """The hosts the configuration names are looked up (checked through the audit event itself, so no
    query leaves the machine): SMTP, database, directory, engine replicas, mirrors."""
    import sys
    from types import SimpleNamespace

    conf = SimpleNamespace(
        HEARTH_NETWORK_ALLOW=["allowed.corp.example"],
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="smtp.corp.example",
        DATABASES={"default": {"HOST": "db.corp.example"}},
        Q_CLUSTER={},
        HEARTH_ENGINE_HOST="127.0.0.1",
        HEARTH_ENGINE_URLS=["http://replica1.corp.example:8765", "http://192.0.2.80:8765"],
        HEARTH_LDAP_URI="ldaps://ldap.corp.example:636",
    )
    policy = netguard.policy_from_settings(conf)
    policy.log_dir = lambda: tmp_path
    policy.dynamic_hosts = lambda: ["git.corp.example"]
    previous = netguard.guard_configure(policy)
    try:
        for name in (
            "allowed.corp.example",
            "smtp.corp.example",
            "DB.corp.example.",
            "ldap.corp.example",
            "replica1.corp.example",
            "git.corp.example",
        ):
            sys.audit("socket.getaddrinfo", name, 443, 0, 0, 0)
            sys.audit("socket.gethostbyname", name)
        assert policy.allows("192.0.2.80")
        with pytest.raises(NetworkGuardError):
            sys.audit("socket.getaddrinfo", "git2.corp.example", 443, 0, 0, 0)
    finally:
        netguard.guard_configure(previous)
    assert [a["host"] for a in netguard.attempts_logged(tmp_path)] == ["git2.corp.example"]


def test_lookup_decisions():
    policy = Policy()
    policy.add("smtp.corp.example")
    policy.add("192.0.2.10")
    assert policy.allows_lookup("localhost") and policy.allows_lookup("web.localhost")
    assert policy.allows_lookup(None) and policy.allows_lookup("") and policy.allows_lookup(b"localhost")
    assert policy.allows_lookup(socket.gethostname())
    assert policy.allows_lookup("SMTP.corp.example.")
    assert policy.allows_lookup("203.0.113.9")  # forward look-up of a literal: no query
    assert not policy.allows_lookup("203.0.113.9", reverse=True)
    assert policy.allows_lookup("192.0.2.10", reverse=True)
    assert not policy.allows_lookup("updates.example.net") and not policy.allows_lookup(b"example.com")


def test_http_clients_fail_like_a_refused_connection(guard):
    import urllib.error
    import urllib.request

    assert netguard.guard_active()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{UNROUTED}:81/", timeout=0.5)
    assert len(netguard.attempts_logged(guard)) == 1


def test_loopback_is_allowed(guard):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
    assert netguard.attempts_logged(guard) == []


def test_policy_decisions_without_connecting():
    policy = Policy()
    for entry in ("192.0.2.10", "198.51.100.0/24", "smtp.corp.example", "[2001:db8::5]"):
        policy.add(entry)
    assert policy.allows("127.0.0.1") and policy.allows("127.8.9.10") and policy.allows("::1")
    assert policy.allows("::ffff:127.0.0.1")
    assert policy.allows("192.0.2.10") and not policy.allows("192.0.2.11")
    assert policy.allows("198.51.100.77") and not policy.allows("198.51.101.1")
    assert policy.allows("2001:db8::5") and not policy.allows("2001:db8::6")
    assert policy.allows("SMTP.corp.example")
    assert not policy.allows(UNROUTED) and not policy.allows("8.8.8.8")


def test_policy_names_the_configured_hosts():
    from types import SimpleNamespace

    conf = SimpleNamespace(
        HEARTH_NETWORK_ALLOW=["192.0.2.1", "10.0.0.0/8"],
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="192.0.2.25",
        DATABASES={"default": {"HOST": "192.0.2.54"}},
        Q_CLUSTER={"redis": {"host": "192.0.2.63"}},
        HEARTH_ENGINE_HOST="127.0.0.1",
    )
    policy = netguard.policy_from_settings(conf)
    policy.dynamic_hosts = lambda: ["git.corp.example"]
    for host in ("192.0.2.1", "10.1.2.3", "192.0.2.25", "192.0.2.54", "192.0.2.63", "git.corp.example"):
        assert policy.allows(host), host
    assert not policy.allows("192.0.2.99")


@pytest.mark.django_db
def test_mirror_hosts_come_from_repository_rows(settings):
    from trainer.models import Repository

    Repository.objects.create(name="corp", source="https://git.corp.example/team/app.git")
    Repository.objects.create(name="scp", source="git@git2.corp.example:team/lib.git")
    policy = netguard.policy_from_settings(settings)
    assert policy.allows("git.corp.example") and policy.allows("git2.corp.example")
    assert not policy.allows("git3.corp.example")


def test_host_of():
    assert netguard.host_of("postgres://u:p@db.corp:5432/hearth") == "db.corp"
    assert netguard.host_of("ssh://git@Git.Corp/x.git") == "git.corp"
    assert netguard.host_of("git@git.corp:team/x.git") == "git.corp"
    assert netguard.host_of("/srv/git/x.git") == "/srv/git/x.git"


def test_a_fresh_appliance_process_refuses_and_logs(tmp_path):
    """The hook is installed by Django's start-up in any Hearth process (gunicorn, qcluster, engine)."""
    home = tmp_path / "instance"
    code = (
        "import django, socket; django.setup()\n"
        "from appliance.netguard import guard_active, NetworkGuardError\n"
        "assert guard_active()\n"
        "s = socket.socket()\n"
        "try:\n"
        f"    s.connect(({UNROUTED!r}, 9))\n"
        "except NetworkGuardError:\n"
        "    print('refused')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HEARTH_")}
    env.update(HEARTH_HOME=str(home), DJANGO_SETTINGS_MODULE="appliance.settings")
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.strip() == "refused"
    lines = (home / "logs" / "network-guard.log").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["host"] == UNROUTED
