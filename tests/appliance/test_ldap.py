"""Sign-in through the organization's directory, against a real slapd this module starts on a free
port (mdb database in a temporary folder): a member of hearth-admins becomes staff and superuser,
a user in no group gets no admin, wrong passwords are refused and throttled like local ones."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SUFFIX = "dc=hearth,dc=test"
ADMINS = f"cn=hearth-admins,ou=groups,{SUFFIX}"


CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {root}/slapd.pid
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw admin-secret
directory {root}/db
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""

LDIF = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
o: Hearth test
dc: hearth

dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{suffix}
objectClass: organizationalUnit
ou: groups

dn: uid=ada,ou=people,{suffix}
objectClass: inetOrgPerson
uid: ada
cn: Ada Lovelace
givenName: Ada
sn: Lovelace
mail: ada@hearth.test
userPassword: ada-directory-pw

dn: uid=bob,ou=people,{suffix}
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
userPassword: bob-directory-pw

dn: {admins}
objectClass: groupOfNames
cn: hearth-admins
member: uid=ada,ou=people,{suffix}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    """ldap://127.0.0.1:<port> of a running slapd holding LDIF; stopped at the end of the module."""
    if not (SLAPD.exists() and SLAPADD.exists()):
        pytest.skip("needs OpenLDAP's slapd (Debian: apt-get install slapd ldap-utils)")
    root = tmp_path_factory.mktemp("slapd")
    (root / "db").mkdir()
    conf, ldif = root / "slapd.conf", root / "data.ldif"
    conf.write_text(CONF.format(root=root, suffix=SUFFIX))
    ldif.write_text(LDIF.format(suffix=SUFFIX, admins=ADMINS))
    subprocess.run([str(SLAPADD), "-f", str(conf), "-l", str(ldif)], check=True, capture_output=True)
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(SLAPD), "-f", str(conf), "-h", url + "/", "-d", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"slapd did not start: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.05)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def directory(slapd, settings, monkeypatch):
    """Django configured from HEARTH_LDAP_* exactly as appliance/settings.py does it."""
    pytest.importorskip("django_auth_ldap", reason="needs the ldap extra (django-auth-ldap)")
    from appliance import settings as hearth_settings

    env = {
        "HEARTH_LDAP_URI": slapd,
        "HEARTH_LDAP_BIND_DN": f"cn=admin,{SUFFIX}",
        "HEARTH_LDAP_BIND_PASSWORD": "admin-secret",
        "HEARTH_LDAP_USER_BASE": f"ou=people,{SUFFIX}",
        "HEARTH_LDAP_GROUP_BASE": f"ou=groups,{SUFFIX}",
        "HEARTH_LDAP_STAFF_GROUP": ADMINS,
        "HEARTH_LDAP_SUPERUSER_GROUP": ADMINS,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def configure() -> None:
        for name, value in hearth_settings._ldap_settings().items():
            setattr(settings, name, value)
        settings.AUTHENTICATION_BACKENDS = [
            "django_auth_ldap.backend.LDAPBackend",
            "django.contrib.auth.backends.ModelBackend",
        ]

    configure()
    settings.HEARTH_LOGIN_MAX_FAILURES = 3
    return configure


def _login(client, username: str, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


@pytest.mark.django_db
def test_directory_admins_reach_the_admin_and_others_do_not(client, directory, django_user_model):
    r = _login(client, "ada", "ada-directory-pw")
    assert r.status_code == 302 and r.url == "/admin/"
    ada = django_user_model.objects.get(username="ada")
    assert ada.is_staff and ada.is_superuser and ada.email == "ada@hearth.test"
    assert not ada.has_usable_password()  # the password stays in the directory
    assert client.get("/admin/").status_code == 200
    client.post("/admin/logout/")

    r = _login(client, "bob", "bob-directory-pw")
    assert r.status_code == 200 and "staff account" in r.content.decode()
    bob = django_user_model.objects.get(username="bob")
    assert not bob.is_staff and not bob.is_superuser
    assert client.get("/admin/").status_code == 302  # back to the login page


@pytest.mark.django_db
def test_wrong_directory_passwords_are_refused_and_throttled(client, directory, django_user_model):
    from appliance.models import AuditEntry, LoginFailure

    for attempt in range(3):
        r = _login(client, "ada", f"wrong-{attempt}")
        assert r.status_code == 200 and "correct username and password" in r.content.decode()
    assert LoginFailure.objects.filter(username="ada").count() == 3
    assert AuditEntry.objects.filter(action="login.failed", target="ada").count() == 3
    r = _login(client, "ada", "ada-directory-pw")  # right password, but the address is locked out
    assert r.status_code == 200 and "Too many failed logins" in r.content.decode()
    assert not django_user_model.objects.filter(username="ada", is_staff=True).exists()


@pytest.mark.django_db
def test_local_accounts_still_sign_in_and_starttls_is_honoured(
    client, directory, monkeypatch, django_user_model
):
    django_user_model.objects.create_superuser("local", "local@hearth.invalid", "a-local-password-1")
    assert _login(client, "local", "a-local-password-1").status_code == 302
    client.post("/admin/logout/")
    # This slapd offers no TLS: with STARTTLS required, the directory sign-in must fail, not fall back.
    monkeypatch.setenv("HEARTH_LDAP_START_TLS", "1")
    directory()
    r = _login(client, "ada", "ada-directory-pw")
    assert r.status_code == 200 and not django_user_model.objects.filter(username="ada").exists()


def test_the_network_guard_allows_the_directory_host(settings):
    from appliance.netguard import policy_from_settings

    settings.HEARTH_LDAP_URI = "ldaps://directory.corp.test:636 ldap://backup-dc.corp.test"
    policy = policy_from_settings(settings)
    policy.dynamic_hosts = None  # no database here
    assert policy.allows("directory.corp.test") and policy.allows("backup-dc.corp.test")
    assert not policy.allows("elsewhere.corp.test")
