"""Sign-in through the organization's directory, against a real slapd this module starts on a free
port (mdb database in a temporary folder, STARTTLS with a certificate made here): a member of
hearth-admins becomes staff and superuser, a user in no group gets no admin, wrong passwords are
refused and throttled like local ones, a directory user never takes over a local account, STARTTLS is
on by default and verified, and a directory user the directory no longer lists as staff is
deactivated, tokens included, at a sign-in or by the periodic check."""

from __future__ import annotations

import datetime
import ipaddress
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
OPS = f"cn=hearth-ops,ou=groups,{SUFFIX}"
ROOT_DN, ROOT_PW = f"cn=admin,{SUFFIX}", "admin-secret"


CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {root}/slapd.pid
TLSCertificateFile {root}/cert.pem
TLSCertificateKeyFile {root}/key.pem
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {root}/db
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""

PERSON = """\
dn: uid={uid},ou=people,{suffix}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
userPassword: {uid}-directory-pw

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

{others}\
dn: {admins}
objectClass: groupOfNames
cn: hearth-admins
member: uid=ada,ou=people,{suffix}
member: uid=carl,ou=people,{suffix}
member: uid=dave,ou=people,{suffix}

dn: {ops}
objectClass: groupOfNames
cn: hearth-ops
member: uid=bob,ou=people,{suffix}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificate(cert: Path, key: Path) -> None:
    """A self-signed certificate for 127.0.0.1 that is its own CA (the client trusts it by file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    """(ldap://127.0.0.1:<port>, its CA file) of a running slapd holding LDIF and offering STARTTLS;
    stopped at the end of the module."""
    if not (SLAPD.exists() and SLAPADD.exists()):
        pytest.skip("needs OpenLDAP's slapd (Debian: apt-get install slapd ldap-utils)")
    root = tmp_path_factory.mktemp("slapd")
    (root / "db").mkdir()
    _certificate(root / "cert.pem", root / "key.pem")
    conf, ldif = root / "slapd.conf", root / "data.ldif"
    conf.write_text(CONF.format(root=root, suffix=SUFFIX, rootdn=ROOT_DN, rootpw=ROOT_PW))
    others = "".join(PERSON.format(uid=uid, suffix=SUFFIX) for uid in ("bob", "carl", "dave"))
    ldif.write_text(LDIF.format(suffix=SUFFIX, admins=ADMINS, ops=OPS, others=others))
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
    yield url, root / "cert.pem"
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def directory(slapd, settings, monkeypatch):
    """Django configured from HEARTH_LDAP_* exactly as appliance/settings.py does it (STARTTLS left at
    its default); call it again after changing the environment."""
    pytest.importorskip("django_auth_ldap", reason="needs the ldap extra (django-auth-ldap)")
    from appliance import settings as hearth_settings

    url, ca_file = slapd
    env = {
        "HEARTH_LDAP_URI": url,
        "HEARTH_LDAP_CA_FILE": str(ca_file),
        "HEARTH_LDAP_BIND_DN": ROOT_DN,
        "HEARTH_LDAP_BIND_PASSWORD": ROOT_PW,
        "HEARTH_LDAP_USER_BASE": f"ou=people,{SUFFIX}",
        "HEARTH_LDAP_GROUP_BASE": f"ou=groups,{SUFFIX}",
        "HEARTH_LDAP_STAFF_GROUP": ADMINS,
        "HEARTH_LDAP_SUPERUSER_GROUP": ADMINS,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HEARTH_LDAP_START_TLS", raising=False)

    def configure() -> None:
        for name, value in hearth_settings._ldap_settings().items():
            setattr(settings, name, value)
        settings.HEARTH_LDAP_URI = hearth_settings._env("LDAP_URI", "")

    configure()
    settings.HEARTH_LOGIN_MAX_FAILURES = 3
    settings.HEARTH_DEFERRED_WRITES = False  # token bookkeeping inline: the test's rows are uncommitted
    return configure


def _login(client, username: str, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def _directory_delete(url: str, uid: str) -> None:
    import ldap

    conn = ldap.initialize(url)
    conn.simple_bind_s(ROOT_DN, ROOT_PW)
    conn.delete_s(f"uid={uid},ou=people,{SUFFIX}")
    conn.unbind_s()


@pytest.fixture
def tokens():
    """`check(raw)`: the status token_authenticate gives `raw` now (200, or the refusal's)."""
    from inference.auth import AuthError, auth_cache_clear, token_authenticate

    def check(raw: str) -> int:
        auth_cache_clear()  # as another web process would, once its cached copy is older than the TTL
        try:
            token_authenticate(f"Bearer {raw}")
        except AuthError as exc:
            return exc.status
        return 200

    yield check
    auth_cache_clear()


@pytest.mark.django_db
def test_directory_admins_reach_the_admin_and_others_do_not(client, directory, django_user_model):
    from appliance.models import DirectoryAccount

    r = _login(client, "ada", "ada-directory-pw")  # over STARTTLS, its default
    assert r.status_code == 302 and r.url == "/admin/"
    ada = django_user_model.objects.get(username="ada")
    assert ada.is_staff and ada.is_superuser and ada.email == "ada@hearth.test"
    assert not ada.has_usable_password()  # the password stays in the directory
    assert DirectoryAccount.objects.get(user=ada).dn == f"uid=ada,ou=people,{SUFFIX}"
    assert client.get("/admin/").status_code == 200
    client.post("/admin/logout/")

    # bob is in the directory but not in the staff group: no admin, and no active account (no tokens).
    r = _login(client, "bob", "bob-directory-pw")
    assert r.status_code == 200 and "inactive" in r.content.decode()
    bob = django_user_model.objects.get(username="bob")
    assert not bob.is_staff and not bob.is_superuser and not bob.is_active
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
def test_a_directory_user_never_takes_over_a_local_account(client, directory, django_user_model, caplog):
    from appliance.models import AuditEntry, DirectoryAccount

    # Local superusers whose names the directory also holds: ada (a directory admin) and bob (in no
    # group: with a superuser group configured, a takeover used to strip the local admin's flags).
    for name in ("ada", "bob"):
        django_user_model.objects.create_superuser(name, f"{name}@local.invalid", f"{name}-local-password-1")
    for name in ("ada", "bob"):
        r = _login(client, name, f"{name}-directory-pw")
        assert r.status_code == 200 and "correct username and password" in r.content.decode()
        local = django_user_model.objects.get(username=name)
        assert (local.is_active, local.is_staff, local.is_superuser) == (True, True, True)
        assert local.email == f"{name}@local.invalid" and local.check_password(f"{name}-local-password-1")
        assert not DirectoryAccount.objects.filter(user=local).exists()
        assert AuditEntry.objects.filter(action="directory.refused", target=name).count() == 1
        assert f"Directory sign-in as {name!r} refused: a local account has that name" in caplog.text
    # The local accounts keep working with their local passwords.
    for name in ("ada", "bob"):
        assert _login(client, name, f"{name}-local-password-1").status_code == 302
        client.post("/admin/logout/")


@pytest.mark.django_db
def test_starttls_is_on_by_default_and_verified(
    client, directory, slapd, monkeypatch, tmp_path, django_user_model
):
    from django.core.exceptions import ImproperlyConfigured

    from appliance import settings as hearth_settings

    def start_tls(uri: str, value: str | None) -> bool:
        monkeypatch.setenv("HEARTH_LDAP_URI", uri)
        if value is None:
            monkeypatch.delenv("HEARTH_LDAP_START_TLS", raising=False)
        else:
            monkeypatch.setenv("HEARTH_LDAP_START_TLS", value)
        return hearth_settings._ldap_settings()["AUTH_LDAP_START_TLS"]

    assert start_tls("ldap://dc.corp.test:389", None) is True
    assert start_tls("LDAP://dc.corp.test", None) is True
    assert start_tls("ldaps://dc.corp.test:636", None) is False
    assert start_tls("ldaps://dc.corp.test ldap://backup-dc.corp.test", None) is True
    assert start_tls("ldap://dc.corp.test", "0") is False
    assert start_tls("ldap://dc.corp.test", "1") is True
    with pytest.raises(ImproperlyConfigured, match="HEARTH_LDAP_START_TLS"):
        start_tls("ldap://dc.corp.test", "maybe")

    # Against the real slapd: a CA that did not sign its certificate refuses the sign-in (no fallback
    # to plain LDAP); HEARTH_LDAP_START_TLS=0, explicitly, signs in without TLS.
    other = tmp_path / "other-ca.pem"
    _certificate(other, tmp_path / "other-key.pem")
    monkeypatch.setenv("HEARTH_LDAP_URI", slapd[0])
    monkeypatch.delenv("HEARTH_LDAP_START_TLS")
    monkeypatch.setenv("HEARTH_LDAP_CA_FILE", str(other))
    directory()
    assert _login(client, "ada", "ada-directory-pw").status_code == 200
    assert not django_user_model.objects.filter(username="ada").exists()
    monkeypatch.setenv("HEARTH_LDAP_START_TLS", "0")
    directory()
    assert _login(client, "ada", "ada-directory-pw").status_code == 302


@pytest.mark.django_db
def test_local_accounts_still_sign_in(client, directory, django_user_model):
    django_user_model.objects.create_superuser("local", "local@hearth.invalid", "a-local-password-1")
    assert _login(client, "local", "a-local-password-1").status_code == 302


def test_deploy_check_refuses_a_plain_directory_in_production(settings):
    from django.core.checks import run_checks

    def errors(uri: str, start_tls: bool, production: bool = True) -> list[str]:
        settings.HEARTH_PRODUCTION, settings.HEARTH_LDAP_URI = production, uri
        settings.AUTH_LDAP_START_TLS = start_tls
        return [m.id for m in run_checks(include_deployment_checks=True) if m.id == "hearth.E020"]

    assert errors("ldap://dc.corp.test:389", start_tls=False) == ["hearth.E020"]
    assert errors("ldaps://dc.corp.test ldap://backup-dc.corp.test", start_tls=False) == ["hearth.E020"]
    assert errors("ldap://dc.corp.test:389", start_tls=True) == []
    assert errors("ldaps://dc.corp.test:636", start_tls=False) == []
    assert errors("ldap://127.0.0.1:389", start_tls=False) == []  # loopback: nothing crosses the network
    assert errors("", start_tls=False) == []
    assert errors("ldap://dc.corp.test:389", start_tls=False, production=False) == []


@pytest.mark.django_db
def test_a_sign_in_deactivates_a_user_no_longer_staff_or_gone(
    client, directory, slapd, monkeypatch, django_user_model, tokens
):
    from appliance.models import AuditEntry, DirectoryAccount
    from inference.auth import token_create

    assert _login(client, "ada", "ada-directory-pw").status_code == 302
    client.post("/admin/logout/")
    _, raw = token_create(username="ada")
    assert tokens(raw) == 200

    monkeypatch.setenv("HEARTH_LDAP_STAFF_GROUP", OPS)  # ada is no longer in the staff group
    directory()
    r = _login(client, "ada", "ada-directory-pw")
    assert r.status_code == 200 and "inactive" in r.content.decode()
    ada = django_user_model.objects.get(username="ada")
    assert not ada.is_active and not ada.is_staff
    assert DirectoryAccount.objects.get(user=ada).suspended_reason == "not in the staff group"
    assert AuditEntry.objects.filter(action="directory.deactivate", target="ada").exists()
    assert tokens(raw) == 403

    monkeypatch.setenv("HEARTH_LDAP_STAFF_GROUP", ADMINS)  # back in it: active again, token included
    directory()
    assert _login(client, "ada", "ada-directory-pw").status_code == 302
    client.post("/admin/logout/")
    assert django_user_model.objects.get(username="ada").is_active and tokens(raw) == 200

    # dave signs in, then leaves the directory: his next attempt finds him gone.
    assert _login(client, "dave", "dave-directory-pw").status_code == 302
    client.post("/admin/logout/")
    _, dave_raw = token_create(username="dave")
    _directory_delete(slapd[0], "dave")
    assert _login(client, "dave", "dave-directory-pw").status_code == 200
    dave = django_user_model.objects.get(username="dave")
    assert not dave.is_active
    assert DirectoryAccount.objects.get(user=dave).suspended_reason == "no longer in the directory"
    assert tokens(dave_raw) == 403


@pytest.mark.django_db
def test_the_periodic_check_deactivates_users_gone_or_no_longer_staff(
    client, directory, slapd, monkeypatch, django_user_model, tokens
):
    from django_q.models import Schedule

    from appliance.directory_tasks import directory_check_task
    from inference.auth import token_create

    schedule = Schedule.objects.get(name="hearth-directory-check")
    assert schedule.func == "appliance.directory_tasks.directory_check_task" and schedule.repeats == -1

    for name in ("ada", "carl"):
        assert _login(client, name, f"{name}-directory-pw").status_code == 302
        client.post("/admin/logout/")
    raw = {name: token_create(username=name)[1] for name in ("ada", "carl", "lena")}  # lena: a local user
    assert directory_check_task()["deactivated"] == []

    _directory_delete(slapd[0], "carl")
    monkeypatch.setenv("HEARTH_LDAP_STAFF_GROUP", OPS)
    directory()
    result = directory_check_task()
    assert sorted(result["deactivated"]) == ["ada", "carl"] and result["checked"] == 2
    users = {u.username: u for u in django_user_model.objects.all()}
    assert not users["ada"].is_active and not users["ada"].is_staff and not users["carl"].is_active
    assert users["lena"].is_active  # local accounts are not the directory's
    assert (tokens(raw["ada"]), tokens(raw["carl"]), tokens(raw["lena"])) == (403, 403, 200)

    monkeypatch.setenv("HEARTH_LDAP_STAFF_GROUP", ADMINS)
    directory()
    result = directory_check_task()
    assert result["reactivated"] == ["ada"] and result["deactivated"] == []
    assert (tokens(raw["ada"]), tokens(raw["carl"])) == (200, 403)

    # A user an admin deactivated stays deactivated: the check undoes only what it did.
    django_user_model.objects.filter(username="ada").update(is_active=False)
    assert directory_check_task()["reactivated"] == []
    assert not django_user_model.objects.get(username="ada").is_active


@pytest.mark.django_db
def test_an_unreachable_directory_deactivates_nobody(client, directory, monkeypatch, django_user_model):
    from appliance.directory_tasks import directory_check_task

    assert _login(client, "ada", "ada-directory-pw").status_code == 302
    monkeypatch.setenv("HEARTH_LDAP_URI", f"ldap://127.0.0.1:{_free_port()}")  # nothing listens there
    directory()
    result = directory_check_task()
    assert "cannot be asked" in result["error"]
    assert django_user_model.objects.get(username="ada").is_active


def test_the_network_guard_allows_the_directory_host(settings):
    from appliance.netguard import policy_from_settings

    settings.HEARTH_LDAP_URI = "ldaps://directory.corp.test:636 ldap://backup-dc.corp.test"
    policy = policy_from_settings(settings)
    policy.dynamic_hosts = None  # no database here
    assert policy.allows("directory.corp.test") and policy.allows("backup-dc.corp.test")
    assert not policy.allows("elsewhere.corp.test")
