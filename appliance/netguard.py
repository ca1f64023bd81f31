"""Network guard: the appliance's Python processes connect to loopback and to the hosts its
configuration names, and to nothing else.

A `sys.addaudithook` hook sees every `socket.connect` (also `connect_ex`, and so every HTTP, SMTP or
database client), `socket.sendto` and `socket.sendmsg` before the system call is made. A destination
that is neither loopback nor allowed is refused with `NetworkGuardError` (an OSError, so clients fail
as on a refused connection) and written to HEARTH_HOME/logs/network-guard.log, one JSON line per
attempt.

DNS look-ups are outbound traffic too (a query names what it asks for): `getaddrinfo`,
`gethostbyname(_ex)`, `gethostbyaddr` and `getnameinfo` are refused the same way unless the name is
local (localhost, this machine's own name) or a host the policy allows. A forward look-up of an address
literal asks nothing of DNS and passes (its connect is checked); a reverse look-up of an address
passes only where a connection to it would. A name handed straight to `connect`/`sendto` is resolved
by CPython before the audit event fires; the stock clients (`socket.create_connection`, http.client,
smtplib, urllib) call `getaddrinfo` first, where the look-up is refused.

Allowed: loopback; the configured SMTP, database, Redis, engine and LDAP hosts; the engine replicas of
HEARTH_ENGINE_URLS; HEARTH_NETWORK_ALLOW (host names, addresses or CIDR networks); the hosts of
registered git mirrors (read from the Repository rows; git itself runs as a child process, which this
hook cannot see). The LDAP hosts of HEARTH_LDAP_URI are allowed too, though python-ldap connects from C
(libldap), below this hook.

Audit hooks cannot be removed, so `guard_install` adds one hook per process and `guard_configure`
swaps the policy it consults.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

LOG_NAME = "network-guard.log"
_NAME_TTL_S = 60.0
# Events whose second argument is a destination (the socket is the first).
_SEND_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
# Events that look a name or an address up; their first argument is the name, address or sockaddr.
_FORWARD_LOOKUPS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"})
_REVERSE_LOOKUPS = frozenset({"socket.gethostbyaddr", "socket.getnameinfo"})
# Names the resolver answers from the machine itself (/etc/hosts, nss-myhostname), never from DNS.
_LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost6",
        "localhost6.localdomain6",
        "ip6-localhost",
        "ip6-loopback",
    }
)


class NetworkGuardError(PermissionError):
    """A connection the appliance's configuration did not name; refused before it was made."""


@dataclass
class Policy:
    names: set[str] = field(default_factory=set)  # host names, resolved when first needed
    networks: list = field(default_factory=list)  # ipaddress networks (single addresses as /32, /128)
    log_dir: Callable[[], Path] | None = None
    dynamic_hosts: Callable[[], Iterable[str]] | None = None  # e.g. git mirror hosts from the database
    _resolved: dict[str, tuple[float, set[str]]] = field(default_factory=dict)
    _dynamic: tuple[float, set[str]] = (0.0, set())

    def add(self, entry: str) -> None:
        entry = entry.strip().strip("[]")
        if not entry:
            return
        try:
            self.networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            self.names.add(entry.lower().rstrip("."))

    def _addresses_of(self, name: str) -> set[str]:
        now = time.monotonic()
        cached = self._resolved.get(name)
        if cached and now - cached[0] < _NAME_TTL_S:
            return cached[1]
        try:
            found = {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            found = set()
        self._resolved[name] = (now, found)
        return found

    def _dynamic_names(self) -> set[str]:
        if self.dynamic_hosts is None or _state.busy:
            return set()
        now = time.monotonic()
        if now - self._dynamic[0] < _NAME_TTL_S:
            return self._dynamic[1]
        _state.busy = True  # the lookup's own database connection must not recurse into it
        try:
            names = {h.lower() for h in self.dynamic_hosts() if h}
        except Exception:  # noqa: BLE001  (no database yet, or no table: no mirror hosts)
            names = set()
        finally:
            _state.busy = False
        self._dynamic = (now, names)
        return names

    def allows_lookup(self, name, *, reverse: bool = False) -> bool:
        """Whether a DNS look-up of `name` may be made: a local name, a host this policy allows, or
        (forward only) an address literal, which the resolver answers without a query."""
        if name is None:  # getaddrinfo(None, port): the wildcard address of a bind
            return True
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        name = str(name).strip().strip("[]").split("%")[0].lower().rstrip(".")
        if not name or name in _LOCAL_NAMES or name.endswith(".localhost") or name == _own_name():
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            return True if not reverse else self.allows(name)
        if _state.busy:  # the guard resolving the names it allows (`_addresses_of`)
            return True
        return self.allows(name)

    def allows(self, host: str) -> bool:
        host = str(host).strip("[]").split("%")[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:  # a name (AF_INET connect resolves it first; rarely seen here)
            ip = None
        if ip is not None:
            if ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped and ip.ipv4_mapped.is_loopback):
                return True
            if ip.is_unspecified:  # connect to 0.0.0.0 / :: reaches this host
                return True
            if any(ip in net for net in self.networks if net.version == ip.version):
                return True
        names = self.names | self._dynamic_names()
        if host.lower() in names:
            return True
        if ip is None:
            return False
        if _state.busy:
            return False
        _state.busy = True
        try:
            return any(host in self._addresses_of(name) for name in names)
        finally:
            _state.busy = False


class _State(threading.local):
    busy = False


_state = _State()
_policy: Policy | None = None
_installed = False
_lock = threading.Lock()
_own: list[str] = []


def _own_name() -> str:
    """This machine's host name (its resolver answers it locally); read once."""
    if not _own:
        _own.append(socket.gethostname().lower().rstrip("."))
    return _own[0]


def _destination(event: str, args: tuple) -> str | None:
    """The host of an AF_INET/AF_INET6 destination, or None for anything else (AF_UNIX, ...)."""
    sock, address = args[0], args[1]
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None


def _log(event: str, host: str, address) -> None:
    policy = _policy
    record = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event": event,
        "host": host,
        "address": repr(address),
        "pid": os.getpid(),
        "process": " ".join(sys.argv[:3])[:200],
        "stack": [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack(limit=10)[:-2]],
    }
    logger.warning("network guard refused %s to %s", event, address)
    if policy is None or policy.log_dir is None:
        return
    _state.busy = True
    try:
        path = policy.log_dir() / LOG_NAME
        with path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError:
        pass
    finally:
        _state.busy = False


def _lookup_name(event: str, args: tuple):
    """The name or address a look-up event asks about (getnameinfo passes a sockaddr tuple)."""
    if not args:
        return None
    target = args[0]
    if event == "socket.getnameinfo" and isinstance(target, tuple):
        return target[0] if target else None
    return target


def _hook(event: str, args: tuple) -> None:
    policy = _policy
    if policy is None:
        return
    if event in _SEND_EVENTS:
        host = _destination(event, args)
        if host is None or policy.allows(host):
            return
        _log(event, host, args[1])
        raise NetworkGuardError(
            f"Hearth's network guard refused a connection to {args[1]!r}: not loopback and not named by "
            "the configuration (add it to HEARTH_NETWORK_ALLOW if it should be reached)."
        )
    if event in _FORWARD_LOOKUPS or event in _REVERSE_LOOKUPS:
        name = _lookup_name(event, args)
        if policy.allows_lookup(name, reverse=event in _REVERSE_LOOKUPS):
            return
        _log(event, str(name), name)
        raise NetworkGuardError(
            f"Hearth's network guard refused a DNS look-up of {name!r}: not local and not named by the "
            "configuration (add it to HEARTH_NETWORK_ALLOW if it should be reached)."
        )


def guard_configure(policy: Policy | None) -> Policy | None:
    """Replace the policy the hook consults (None: allow everything); returns the previous one."""
    global _policy
    previous, _policy = _policy, policy
    return previous


def guard_install(policy: Policy) -> None:
    """Activate `policy` and add the audit hook (once per process)."""
    global _installed
    with _lock:
        guard_configure(policy)
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


def guard_active() -> bool:
    return _installed and _policy is not None


def host_of(url_or_host: str) -> str:
    """`postgres://u@db:5432/x`, `ssh://git@host/x`, `git@host:x.git` or `host` → the host."""
    value = url_or_host.strip()
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    if "@" in value and ":" in value.split("@", 1)[1]:  # scp-like git address
        return value.split("@", 1)[1].split(":", 1)[0].lower()
    return value.lower()


def policy_from_settings(settings) -> Policy:
    """The hosts the configuration names: SMTP, database, Redis, engine, LDAP, HEARTH_NETWORK_ALLOW,
    mirrors."""
    policy = Policy()
    for entry in settings.HEARTH_NETWORK_ALLOW:
        policy.add(entry)
    if getattr(settings, "EMAIL_BACKEND", "").endswith("smtp.EmailBackend"):
        policy.add(getattr(settings, "EMAIL_HOST", ""))
    for db in settings.DATABASES.values():
        if db.get("HOST"):
            policy.add(db["HOST"])
    redis = (getattr(settings, "Q_CLUSTER", {}) or {}).get("redis")
    if isinstance(redis, dict) and redis.get("host"):
        policy.add(redis["host"])
    elif isinstance(redis, str):
        policy.add(host_of(redis))
    policy.add(settings.HEARTH_ENGINE_HOST)
    for uri in (getattr(settings, "HEARTH_LDAP_URI", "") or "").replace(",", " ").split():
        policy.add(host_of(uri))  # the directory server(s) admins sign in through
    for url in getattr(settings, "HEARTH_ENGINE_URLS", []) or []:
        policy.add(host_of(url))  # engine replicas

    def log_dir() -> Path:
        from appliance import paths

        return paths.logs_dir()

    def mirror_hosts() -> list[str]:
        from django.apps import apps

        repositories = apps.get_model("trainer", "Repository")  # the registry: no import of a higher layer
        return [host_of(src) for src in repositories.objects.values_list("source", flat=True)]

    policy.log_dir = log_dir
    policy.dynamic_hosts = mirror_hosts
    return policy


def attempts_logged(log_dir: Path) -> list[dict]:
    """The refused attempts recorded under `log_dir` (for tests and `make test-offline`)."""
    path = Path(log_dir) / LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
