"""Sign-in through the organization's directory (LDAP), held to the users that came from it, and the
look-up that keeps those users in step with the directory.

A directory user is made at their first sign-in and recorded as a `DirectoryAccount`. A local account
(one not made from the directory) is never signed in through the directory, whatever the directory
holds under that name: the sign-in is refused, logged and audited, and the local account is left as it
was (password, flags, groups).

A directory user whom the directory no longer lists, or no longer lists in the staff group
(HEARTH_LDAP_STAFF_GROUP, when one is set), is deactivated (`is_active=False`): at a sign-in, or by
the periodic check (`directory_accounts_check`, every 15 minutes). Their admin session ends and their
API tokens are refused (inference/auth.py). When the directory lists them again, Hearth makes them
active again; a user an admin deactivated by hand stays as the admin left them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import ldap
import ldap.filter
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_auth_ldap.backend import LDAPBackend

from appliance.audit import audit_record, request_client_ip
from appliance.errors import HearthError
from appliance.models import DirectoryAccount

logger = logging.getLogger(__name__)


class DirectoryError(HearthError):
    """The directory could not be asked (unreachable, bind refused, TLS failed): nothing was changed."""


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend, for directory accounts only (see the module's docstring)."""

    def get_or_build_user(self, username, ldap_user):
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and not DirectoryAccount.objects.filter(user=user).exists():
            name = user.get_username()
            logger.warning(
                "Directory sign-in as %r refused: a local account has that name and did not come from the "
                "directory; it is left unchanged. Rename or delete the local account to let the directory "
                "user in.",
                name,
            )
            request = getattr(ldap_user, "_request", None)
            audit_record(
                action="directory.refused",
                target=name,
                detail=f"the directory entry {ldap_user.dn} has the name of a local account",
                ip=request_client_ip(request) if request is not None else None,
            )
            raise ldap_user.AuthenticationFailed("a local account has this name")
        return user, built

    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username=username, password=password, **kwargs)
        ip = request_client_ip(request) if request is not None else None
        if user is not None:
            account = _account_record(user, user.ldap_user.dn)
            _standing_apply(self, user, account, ip=ip)
        elif username and password:
            _gone_check(self, username.strip(), ip=ip)
        return user

    def get_user(self, user_id):
        user = super().get_user(user_id)
        # As Django's ModelBackend: a deactivated user's session ends with their next request.
        return user if user is not None and user.is_active else None


@dataclass
class DirectoryCheck:
    """What one periodic check did, by user name."""

    checked: int = 0
    deactivated: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def directory_accounts_check() -> DirectoryCheck:
    """Look every directory user up: update their names and flags from the directory (as a sign-in
    does), deactivate those it no longer lists or no longer lists as staff, and reactivate those
    Hearth deactivated whom it lists again. Raises DirectoryError when the directory cannot be asked,
    leaving the users not yet checked as they are: an outage never deactivates anyone."""
    backend = DirectoryBackend()
    conn = _connect(backend)
    result = DirectoryCheck()
    accounts = DirectoryAccount.objects.select_related("user").filter(
        Q(user__is_active=True) | Q(suspended_at__isnull=False)
    )
    try:
        for account in accounts.order_by("pk"):
            user, name = account.user, account.user.get_username()
            try:
                dn = _entry_find(backend, conn, name)
            except ldap.LDAPError as exc:
                raise DirectoryError(
                    f"The directory stopped answering while checking {name}: {_why(exc)}"
                ) from exc
            result.checked += 1
            if dn is None:
                if _deactivate(user, account, "no longer in the directory"):
                    result.deactivated.append(name)
                continue
            populated = backend.populate_user(name)
            if populated is None:
                logger.warning(
                    "directory check: %s is in the directory but could not be read; left as is", name
                )
                result.unreadable.append(name)
                continue
            account = _account_record(populated, dn)
            was_active = populated.is_active
            _standing_apply(backend, populated, account)
            if was_active and not populated.is_active:
                result.deactivated.append(name)
            elif populated.is_active and not was_active:
                result.reactivated.append(name)
    finally:
        conn.unbind_s()
    return result


def directory_account_adopt(*, username: str) -> DirectoryAccount:
    """Record an existing local account as the directory's user of that name: from then on the
    directory signs them in and decides their flags. An operator's deliberate choice (for example for
    an account made by the directory sign-in before Hearth recorded directory accounts), never automatic."""
    user = get_user_model().objects.get(**{get_user_model().USERNAME_FIELD: username})
    account, _ = DirectoryAccount.objects.get_or_create(user=user, defaults={"dn": ""})
    audit_record(action="directory.adopt", target=user.get_username(), detail="local account adopted")
    return account


def _account_record(user, dn: str | None) -> DirectoryAccount:
    """The user's DirectoryAccount (made for a user the directory sign-in has just built), with the
    entry's DN and the time it was found."""
    account, created = DirectoryAccount.objects.get_or_create(
        user=user, defaults={"dn": dn or "", "checked_at": timezone.now()}
    )
    if not created:
        account.dn, account.checked_at = dn or account.dn, timezone.now()
        DirectoryAccount.objects.filter(pk=account.pk).update(dn=account.dn, checked_at=account.checked_at)
    return account


def _standing_apply(backend: LDAPBackend, user, account: DirectoryAccount, *, ip: str | None = None) -> None:
    """Deactivate a directory user outside the staff group (when one is configured); reactivate one
    that Hearth deactivated and the directory lists again. `user` holds the flags just read."""
    staff_group = backend.settings.USER_FLAGS_BY_GROUP.get("is_staff")
    if staff_group and not user.is_staff:
        _deactivate(user, account, "not in the staff group", ip=ip)
    else:
        _reactivate(user, account, ip=ip)


def _gone_check(backend: LDAPBackend, username: str, *, ip: str | None) -> None:
    """After a failed directory sign-in as an active directory user: deactivate them if the directory no
    longer lists them. A directory that cannot be asked changes nothing."""
    field_name = get_user_model().USERNAME_FIELD
    account = (
        DirectoryAccount.objects.select_related("user")
        .filter(**{f"user__{field_name}__iexact": username, "user__is_active": True})
        .first()
    )
    if account is None:
        return
    try:
        conn = _connect(backend)
        try:
            dn = _entry_find(backend, conn, username)
        finally:
            conn.unbind_s()
    except (DirectoryError, ldap.LDAPError) as exc:
        logger.warning("could not ask the directory whether %s still exists: %s", username, exc)
        return
    if dn is None:
        _deactivate(account.user, account, "no longer in the directory", ip=ip)


def _deactivate(user, account: DirectoryAccount, reason: str, *, ip: str | None = None) -> bool:
    with transaction.atomic():
        changed = get_user_model().objects.filter(pk=user.pk, is_active=True).update(is_active=False)
        if changed:
            DirectoryAccount.objects.filter(pk=account.pk).update(
                suspended_at=timezone.now(), suspended_reason=reason
            )
    user.is_active = False
    if changed:
        name = user.get_username()
        logger.warning("directory user %s deactivated (%s): their API tokens stop working", name, reason)
        audit_record(action="directory.deactivate", target=name, detail=reason, ip=ip)
    return bool(changed)


def _reactivate(user, account: DirectoryAccount, *, ip: str | None = None) -> bool:
    if account.suspended_at is None:
        return False  # active, or deactivated by an admin: not Hearth's to undo
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).update(is_active=True)
        DirectoryAccount.objects.filter(pk=account.pk).update(suspended_at=None, suspended_reason="")
    user.is_active = True
    name = user.get_username()
    logger.info("directory user %s reactivated: the directory lists them as staff again", name)
    audit_record(action="directory.reactivate", target=name, detail="listed in the directory again", ip=ip)
    return True


def _connect(backend: LDAPBackend):
    """A connection bound as HEARTH_LDAP_BIND_DN, with the sign-in's options (TLS included)."""
    s = backend.settings
    try:
        conn = backend.ldap.initialize(s.SERVER_URI, bytes_mode=False)
        for option, value in s.CONNECTION_OPTIONS.items():
            conn.set_option(option, value)
        if s.START_TLS:
            conn.start_tls_s()
        conn.simple_bind_s(s.BIND_DN, s.BIND_PASSWORD)
    except ldap.LDAPError as exc:
        raise DirectoryError(f"The directory at {s.SERVER_URI} cannot be asked: {_why(exc)}") from exc
    return conn


def _entry_find(backend: LDAPBackend, conn, username: str) -> str | None:
    """The DN of `username`'s entry, found as a sign-in finds it; None when the directory holds no
    entry, or several, for that name. LDAP errors are raised, never taken for "not found"."""
    search = backend.settings.USER_SEARCH
    filterstr = search.filterstr % {"user": ldap.filter.escape_filter_chars(username)}
    found = [dn for dn, _ in conn.search_s(search.base_dn, search.scope, filterstr, ["1.1"]) if dn]
    return found[0] if len(found) == 1 else None


def _why(exc: ldap.LDAPError) -> str:
    """python-ldap's error as a sentence: its description and, where it has one, the server's detail."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return "; ".join(str(info[k]) for k in ("desc", "info") if info.get(k)) or str(exc)
