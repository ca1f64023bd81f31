"""Django settings for Hearth: the only module that reads the environment (prefix HEARTH_)."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from appliance import instance as _instance

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(f"HEARTH_{name}", default)


def _env_bool(name: str, default: bool) -> bool:
    return _env(name, "1" if default else "0").lower() in {"1", "true", "yes", "on"}


# Nothing may reach a model hub: transformers and huggingface_hub read these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in _env(name, default).split(",") if item.strip()]


DEBUG = _env_bool("DEBUG", False)
# HEARTH_PRODUCTION=1: TLS-only cookies, HSTS, HTTPS redirect (see "Production" below).
HEARTH_PRODUCTION = _env_bool("PRODUCTION", False)

# Instance root: every artifact (mirrors, datasets, runs, models, database, keys) lives below it.
# It is created 0700 and everything the process writes is private (umask 077): it holds the secret
# key, encrypted credentials and the users' code.
HEARTH_HOME = Path(_env("HOME", str(BASE_DIR / "instance"))).resolve()
if _env_bool("PRIVATE_UMASK", True):
    os.umask(_instance.PRIVATE_UMASK)
# Secret key: HEARTH_SECRET_KEY, else HEARTH_HOME/secret_key (0600), generated at first start.
# There is no constant fallback; the hearth.E001 check refuses a weak key.
SECRET_KEY = _env("SECRET_KEY", "") or _instance.secret_key_load(HEARTH_HOME)

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")

# Local scratch of this process (temporary files that never need to be shared: a key handed to one git
# call, a converter's work files). Worker hosts keep it on local disk while HEARTH_HOME is shared storage.
# Empty: HEARTH_HOME/tmp.
HEARTH_SCRATCH = _env("SCRATCH", "")

# The engine process that holds the served GGUF listens on loopback only.
HEARTH_ENGINE_HOST = _env("ENGINE_HOST", "127.0.0.1")
HEARTH_ENGINE_PORT = int(_env("ENGINE_PORT", "8765"))
# The secret the web tier shows the engine on every call; empty = generated into HEARTH_HOME/engine_secret.
# Required when the engine listens beyond loopback (both hosts need the same value).
HEARTH_ENGINE_SECRET = _env("ENGINE_SECRET", "")
# Several engine replicas (comma-separated http://host:port); empty = the one engine above. Each user
# sticks to one replica (its prompt cache); a replica that fails is left out for ENGINE_RETRY_S seconds,
# then health-checked before it takes its users back.
HEARTH_ENGINE_URLS = [u.strip().rstrip("/") for u in _env("ENGINE_URLS", "").split(",") if u.strip()]
HEARTH_ENGINE_RETRY_S = float(_env("ENGINE_RETRY_S", "5"))
# One box, both jobs: the engine and the job worker on disjoint cores (auto: the engine the first half,
# the worker the rest; all: no pinning; or a CPU list such as 0-3,8). Unset, a process started alone
# uses every core (a dedicated engine or worker host), while `manage.py serve` and the appliance's
# units, which run both on one box, use auto. See appliance/cpusets.py.
HEARTH_ENGINE_CPUS = _env("ENGINE_CPUS", "")
HEARTH_WORKER_CPUS = _env("WORKER_CPUS", "")
# llama.cpp's threads: by default one per core of the engine's set.
HEARTH_ENGINE_THREADS = int(_env("ENGINE_THREADS", "0"))
HEARTH_ENGINE_CTX = int(_env("ENGINE_CTX", "2048"))
HEARTH_PROMOTION_MARGIN = float(_env("PROMOTION_MARGIN", "0.0"))
# The promotion gate also needs a paired, significant win: an exact McNemar test at this level.
HEARTH_PROMOTION_ALPHA = float(_env("PROMOTION_ALPHA", "0.05"))
# The gate refuses a candidate that forgot general code: its exact match on the standard library's
# held-out lines fell below the base's by more than this, significantly at the level above.
HEARTH_FORGETTING_MAX_DROP = float(_env("FORGETTING_MAX_DROP", "0.02"))
# Repository context: evaluation scores every model with and without snippets of the dataset's code
# index as well (the "+context" arms); "auto" writes snippets in the model's own file-separator
# format where its vocabulary has one, "comments" always as path-comment blocks.
HEARTH_CONTEXT_EVAL = _env("CONTEXT_EVAL", "1") not in ("0", "false", "no", "")
HEARTH_CONTEXT_FORMAT = _env("CONTEXT_FORMAT", "auto")
HEARTH_BASE_MODEL = _env("BASE_MODEL", "smollm2-135m-instruct")
# Offer Hearth's micro test models (slugs hearth-micro*) on "Start a custom model" beside the real bases.
HEARTH_SHOW_TEST_BASES = _env_bool("SHOW_TEST_BASES", False)
HEARTH_WEB_PORT = int(_env("WEB_PORT", "8000"))
# The address Hearth's web front binds (0.0.0.0 or a LAN address to serve other hosts; loopback by
# default). The front (appliance/proxy.py) reads whole requests within deadlines, so slow clients cannot
# hold gunicorn's threads; gunicorn itself listens only on a private unix socket.
HEARTH_WEB_BIND = _env("WEB_BIND", "127.0.0.1")
# TLS terminated by Hearth's web front itself, or by a reverse proxy in front
# (packaging/proxy/): then HEARTH_BEHIND_PROXY=1 trusts its X-Forwarded-Proto and X-Forwarded-For.
HEARTH_TLS_CERT = _env("TLS_CERT", "")
HEARTH_TLS_KEY = _env("TLS_KEY", "")
HEARTH_BEHIND_PROXY = _env_bool("BEHIND_PROXY", False)
# The proxies whose X-Forwarded-For is believed (addresses or CIDR networks, comma-separated; loopback by
# default, the proxy on this box): a request from anywhere else is taken at its own address, and the
# client is the right-most forwarded address that is not one of these. The admin login throttle, the API's
# invalid-token limit and the audit log all use that address.
HEARTH_TRUSTED_PROXIES = _env_list("TRUSTED_PROXIES", "127.0.0.1,::1")


def _networks_check(name: str, entries: list[str]) -> None:
    import ipaddress

    for entry in entries:
        try:
            ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"HEARTH_{name}: {entry!r} is not an address or a CIDR network."
            ) from None


_networks_check("TRUSTED_PROXIES", HEARTH_TRUSTED_PROXIES)
# Network guard (appliance/netguard.py): refuse and log every connection to (and every DNS look-up of)
# a non-loopback host that the configuration does not name (SMTP, database, engine and its replicas,
# LDAP, git mirrors) or HEARTH_NETWORK_ALLOW lists (host names, addresses, CIDR networks).
HEARTH_NETWORK_GUARD = _env_bool("NETWORK_GUARD", True)
HEARTH_NETWORK_ALLOW = _env_list("NETWORK_ALLOW")

# Mirrors: how often the scheduled sync fetches every repository (0 switches the schedule off),
# and the key that encrypts intranet credentials at rest (default: derived from SECRET_KEY).
HEARTH_MIRROR_SYNC_MINUTES = int(_env("MIRROR_SYNC_MINUTES", "60"))
HEARTH_CREDENTIAL_KEY = _env("CREDENTIAL_KEY", "")
# Datasets: exclusion globs (gitignore syntax, comma-separated) applied to every repository.
HEARTH_DATASET_EXCLUDE = [g.strip() for g in _env("DATASET_EXCLUDE", "").split(",") if g.strip()]
# A training run whose worker died resumes from its checkpoint, up to this many attempts.
HEARTH_TRAINING_MAX_ATTEMPTS = int(_env("TRAINING_MAX_ATTEMPTS", "3"))
# Processes per training run on a worker host, one per GPU: above 1 the worker launches the run under
# torchrun (trainer/training/distributed.py). On a host without CUDA they are CPU processes (gloo).
HEARTH_TRAINING_GPUS = int(_env("TRAINING_GPUS", "1"))
# Every stage's working row (a repository syncing, a dataset, a training run or a model version
# building, an evaluation running, a base importing) beats every HEARTBEAT_S while its worker lives;
# the stuck-rows watchdog (every minute) acts on one silent for STUCK_S: it fails it with the reason,
# or puts a training run back in the queue to resume from its checkpoint.
HEARTH_WORK_HEARTBEAT_S = float(_env("WORK_HEARTBEAT_S", "10"))
HEARTH_WORK_STUCK_S = float(_env("WORK_STUCK_S", "120"))
HEARTH_RETRAIN_MIN_INTERVAL_H = float(_env("RETRAIN_MIN_INTERVAL_H", "168"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "appliance",
    "trainer",
    "inference",
    "webui",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "appliance.urls"
WSGI_APPLICATION = "appliance.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "webui" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database_from_url(url: str) -> dict:
    """`postgres://user:password@host:port/name?sslmode=require` → a Django DATABASES entry. Query
    parameters become libpq options (sslmode, sslrootcert, connect_timeout, ...)."""
    from urllib.parse import parse_qsl, unquote, urlparse

    u = urlparse(url)
    if not u.path.strip("/"):
        raise RuntimeError("HEARTH_DATABASE must name a database: postgres://user:password@host:5432/hearth")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(u.path.lstrip("/")),
        "USER": unquote(u.username or ""),
        "PASSWORD": unquote(u.password or ""),
        "HOST": u.hostname or "",
        "PORT": str(u.port or ""),
        "OPTIONS": dict(parse_qsl(u.query)),
        # Workers hold a connection for hours of training: reuse it, but check it before each request.
        "CONN_MAX_AGE": int(_env("DATABASE_CONN_MAX_AGE", "60")),
        "CONN_HEALTH_CHECKS": True,
    }


_db_url = _env("DATABASE", "")
if _db_url.startswith(("postgres://", "postgresql://")):
    DATABASES = {"default": _database_from_url(_db_url)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _db_url or str(HEARTH_HOME / "hearth.sqlite3"),
            # Several processes (web, qcluster, engine) share the file: wait instead of failing.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
            # Each thread keeps its connection. Opened per request (Django's default), a connection
            # (the file, the WAL pragma, Django's functions) cost the web tier 1 ms of CPU per
            # completion: 4.7 ms against 3.7 with the connection kept, one client, 300 keystrokes.
            "CONN_MAX_AGE": int(_env("DATABASE_CONN_MAX_AGE", "60")),
            "CONN_HEALTH_CHECKS": True,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sign-in through the organization's directory (LDAP; needs the `ldap` extra, django-auth-ldap).
# HEARTH_LDAP_URI (ldap://host:389 or ldaps://host:636; empty = off): directory users sign in to the
# admin, local accounts still work. Users are found under LDAP_USER_BASE with LDAP_USER_FILTER (as the
# LDAP_BIND_DN account, or anonymously), their groups under LDAP_GROUP_BASE; members of
# LDAP_STAFF_GROUP get is_staff, members of LDAP_SUPERUSER_GROUP is_superuser (group DNs, checked at
# every sign-in and every 15 minutes). A directory user is never signed in as a local account of the
# same name (appliance/directory.py). ldap:// is upgraded with STARTTLS unless LDAP_START_TLS=0 says
# otherwise (ldaps:// is TLS already); LDAP_CA_FILE names the CA to trust.
HEARTH_LDAP_URI = _env("LDAP_URI", "")

_LDAP_GROUP_TYPES = {
    "groupOfNames": "GroupOfNamesType",
    "groupOfUniqueNames": "GroupOfUniqueNamesType",
    "posixGroup": "PosixGroupType",
}


def _ldap_settings() -> dict:
    """The django-auth-ldap settings (AUTH_LDAP_*) for the HEARTH_LDAP_* environment."""
    try:
        import ldap
        from django_auth_ldap import config
    except ImportError as exc:
        raise RuntimeError(
            "HEARTH_LDAP_URI is set but django-auth-ldap is not installed: pip install 'hearth[ldap]'"
        ) from exc
    group_type = _env("LDAP_GROUP_TYPE", "groupOfNames")
    if group_type not in _LDAP_GROUP_TYPES:
        raise RuntimeError(f"HEARTH_LDAP_GROUP_TYPE must be one of {', '.join(_LDAP_GROUP_TYPES)}")
    flags = {"is_staff": _env("LDAP_STAFF_GROUP", ""), "is_superuser": _env("LDAP_SUPERUSER_GROUP", "")}
    uri = _env("LDAP_URI", "")
    # TLS options per connection (NEWCTX last: it builds the connection's TLS context from those above),
    # so that the CA named here is the one trusted, whatever libldap's own configuration says.
    tls = {ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND}
    if _env("LDAP_CA_FILE", ""):
        tls[ldap.OPT_X_TLS_CACERTFILE] = _env("LDAP_CA_FILE", "")
    tls[ldap.OPT_X_TLS_NEWCTX] = 0
    return {
        "AUTHENTICATION_BACKENDS": [
            "appliance.directory.DirectoryBackend",
            "django.contrib.auth.backends.ModelBackend",
        ],
        "AUTH_LDAP_SERVER_URI": uri,
        "AUTH_LDAP_BIND_DN": _env("LDAP_BIND_DN", ""),
        "AUTH_LDAP_BIND_PASSWORD": _env("LDAP_BIND_PASSWORD", ""),
        "AUTH_LDAP_START_TLS": _ldap_start_tls(uri),
        "AUTH_LDAP_USER_SEARCH": config.LDAPSearch(
            _env("LDAP_USER_BASE", ""), ldap.SCOPE_SUBTREE, _env("LDAP_USER_FILTER", "(uid=%(user)s)")
        ),
        "AUTH_LDAP_GROUP_SEARCH": config.LDAPSearch(
            _env("LDAP_GROUP_BASE", ""), ldap.SCOPE_SUBTREE, f"(objectClass={group_type})"
        ),
        "AUTH_LDAP_GROUP_TYPE": getattr(config, _LDAP_GROUP_TYPES[group_type])(),
        "AUTH_LDAP_USER_FLAGS_BY_GROUP": {flag: dn for flag, dn in flags.items() if dn},
        "AUTH_LDAP_USER_ATTR_MAP": {"first_name": "givenName", "last_name": "sn", "email": "mail"},
        "AUTH_LDAP_CONNECTION_OPTIONS": {ldap.OPT_NETWORK_TIMEOUT: 10, ldap.OPT_REFERRALS: 0, **tls},
    }


def _ldap_start_tls(uri: str) -> bool:
    """STARTTLS: on by default when HEARTH_LDAP_URI (one or more URIs) names a plain ldap:// server, off
    only when HEARTH_LDAP_START_TLS says so (0, false, no, off). An ldaps:// connection is TLS from its
    first byte and is not upgraded again."""
    value = _env("LDAP_START_TLS", "").strip().lower()
    if not value:
        return any(u.lower().startswith("ldap://") for u in uri.replace(",", " ").split())
    if value not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise ImproperlyConfigured(f"HEARTH_LDAP_START_TLS={value!r}: write 1 or 0.")
    return value in {"1", "true", "yes", "on"}


if HEARTH_LDAP_URI:
    globals().update(_ldap_settings())

# Admin logins: after this many failures from one client address within the lockout window, that
# address is refused until the window has passed (counted in the database, so every web worker agrees).
HEARTH_LOGIN_MAX_FAILURES = int(_env("LOGIN_MAX_FAILURES", "5"))
HEARTH_LOGIN_LOCKOUT_S = int(_env("LOGIN_LOCKOUT_S", "900"))
# API requests with an invalid token: after this many from one client address within a minute, that
# address gets 429 until the minute has passed (0: no limit).
HEARTH_API_AUTH_MAX_FAILURES = int(_env("API_AUTH_MAX_FAILURES", "30"))
# A new token expires after this many days unless its creator names another expiry (0: never). The
# earlier name, HEARTH_TOKEN_DEFAULT_DAYS, is read when this one is not set.
HEARTH_TOKEN_DAYS = int(_env("TOKEN_DAYS", _env("TOKEN_DEFAULT_DAYS", "90")))
if HEARTH_TOKEN_DAYS < 0:
    raise ImproperlyConfigured(
        f"HEARTH_TOKEN_DAYS={HEARTH_TOKEN_DAYS}: write a number of days, or 0 for never."
    )
# git: seconds one git call may take (a first clone of a large repository needs more), and whether
# unencrypted git:// URLs are allowed (like http://, they are refused unless an admin opts in).
HEARTH_GIT_TIMEOUT_S = float(_env("GIT_TIMEOUT_S", "3600"))
HEARTH_GIT_ALLOW_INSECURE = _env_bool("GIT_ALLOW_INSECURE", False)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(_env("STATIC_ROOT", str(HEARTH_HOME / "static")))
# The admin's static files are served by WhiteNoise: collected (the offline bundle ships them) when
# STATIC_ROOT holds them, else straight from the installed apps.
WHITENOISE_USE_FINDERS = not (STATIC_ROOT / "admin").is_dir()

# Production (HEARTH_PRODUCTION=1): what `manage.py check --deploy --fail-level WARNING` asks for.
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS")
if HEARTH_BEHIND_PROXY:
    # Only behind a proxy that sets this header itself (packaging/proxy/nginx.conf does).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
if HEARTH_PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _env_bool("SSL_REDIRECT", True)
    # Probes (systemd, load balancers, `manage.py serve`) may ask over plain HTTP on loopback.
    SECURE_REDIRECT_EXEMPT = [r"^ready$", r"^v1/health$"]
    SECURE_HSTS_SECONDS = int(_env("HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = _env_bool("HSTS_PRELOAD", True)
    SESSION_COOKIE_AGE = int(_env("SESSION_COOKIE_AGE", str(12 * 3600)))

# django-q2: the ORM broker needs no extra server (single box); with HEARTH_REDIS_URL the queue lives
# in Redis and any number of worker hosts take jobs from it. Training jobs run for hours, so the
# timeout is long and retry (re-delivery of a job whose worker died) comes after it.
HEARTH_REDIS_URL = _env("REDIS_URL", "")
# Training jobs go to this queue when it is set; only workers started with HEARTH_WORKER_GPU=1 take
# them (and only them). Mirror, dataset and export jobs stay on the default queue, on any worker.
HEARTH_GPU_QUEUE = _env("GPU_QUEUE", "")
HEARTH_WORKER_GPU = _env_bool("WORKER_GPU", False)
if HEARTH_WORKER_GPU and not HEARTH_GPU_QUEUE:
    raise RuntimeError(
        "HEARTH_WORKER_GPU=1 needs HEARTH_GPU_QUEUE (the queue name training jobs are sent to)"
    )
_job_timeout = int(_env("JOB_TIMEOUT", str(6 * 3600)))
Q_CLUSTER = {
    "name": "hearth",
    "workers": int(_env("WORKERS", "1")),
    "recycle": 1,
    "timeout": _job_timeout,
    "retry": _job_timeout + 600,
    "max_attempts": 1,
    "catch_up": False,
    "ack_failures": True,
    "poll": 0.5,
    "label": "Jobs",
    **({"redis": HEARTH_REDIS_URL} if HEARTH_REDIS_URL else {"orm": "default"}),
    # The queue this process consumes: "hearth" (every job but training), or the GPU queue.
    **({"cluster_name": HEARTH_GPU_QUEUE} if HEARTH_WORKER_GPU else {}),
}

# Notifications: in-app always; email to HEARTH_NOTIFY_EMAILS through the intranet SMTP server when
# HEARTH_SMTP_HOST is set, else to the console (or HEARTH_EMAIL_FILE_PATH with the file backend).
HEARTH_NOTIFY_EMAILS = [a for a in _env("NOTIFY_EMAILS", "").split(",") if a]
DEFAULT_FROM_EMAIL = _env("FROM_EMAIL", "hearth@localhost")
if _env("SMTP_HOST", ""):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _env("SMTP_HOST", "")
    EMAIL_PORT = int(_env("SMTP_PORT", "25"))
    EMAIL_HOST_USER = _env("SMTP_USER", "")
    EMAIL_HOST_PASSWORD = _env("SMTP_PASSWORD", "")
    EMAIL_USE_TLS = _env_bool("SMTP_TLS", False)
elif _env("EMAIL_FILE_PATH", ""):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = _env("EMAIL_FILE_PATH", "")
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
HEARTH_AUTO_RETRAIN = _env_bool("AUTO_RETRAIN", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "appliance": {"handlers": ["console"], "level": _env("LOG_LEVEL", "INFO")},
        "trainer": {"handlers": ["console"], "level": _env("LOG_LEVEL", "INFO")},
        "inference": {"handlers": ["console"], "level": _env("LOG_LEVEL", "INFO")},
    },
}

# Serving (stage 6): engine slots (sequences decoded together in one batch), per-token rate limit, how long the web tier caches
# the admin's serving policy, and how often the engine polls for a promoted model.
HEARTH_ENGINE_SLOTS = int(_env("ENGINE_SLOTS", "8"))
# After each decode, llama.cpp's OpenMP workers spin this many rounds before they sleep (GOMP_SPINCOUNT).
# Empty, the default: libgomp's own (300,000 rounds here), which llama-server runs with too. It was 100,000,
# for a lone request's sake; against llama-server (bench_serving --series llama-server, five runs each way)
# libgomp's default moved eight typing clients' p50 from 1.004 to 0.982 of llama-server's on average and their
# p95 from 1.033 to 0.998, and one client's p50 from 0.977 to 1.011 (its goal is 1.05).
HEARTH_ENGINE_OMP_SPINCOUNT = _env("ENGINE_OMP_SPINCOUNT", "").strip()
if HEARTH_ENGINE_OMP_SPINCOUNT and not HEARTH_ENGINE_OMP_SPINCOUNT.isdigit():
    raise ImproperlyConfigured(
        f"HEARTH_ENGINE_OMP_SPINCOUNT={HEARTH_ENGINE_OMP_SPINCOUNT!r}: write a number of spin rounds, or nothing."
    )
HEARTH_ENGINE_POLL_S = float(_env("ENGINE_POLL_S", "2"))
# llama.cpp's flash-attention kernels in every context Hearth opens (serving, evaluation, export checks:
# one choice, so they decode alike). Off by default: with a KV stream per slot, a CPU decodes faster
# without them. SmolLM2-135M Q4_1, 2 cores, 840 cached tokens a lane: a lone token 14.4-14.5 ms off against
# 22.2-22.9 ms on, a step of 8 lanes 66 ms against 116-120 ms; 500-token prompt slices are about 10% slower off.
# They paid under the earlier unified KV cache, where they skip the other users' masked cells.
HEARTH_FLASH_ATTENTION = _env_bool("FLASH_ATTENTION", False)
HEARTH_RATE_LIMIT = int(_env("RATE_LIMIT", "600"))
HEARTH_POLICY_CACHE_S = float(_env("POLICY_CACHE_S", "5"))
# Seconds a web process keeps a token that authenticated, and an address's failure count (0: none).
HEARTH_AUTH_CACHE_S = float(_env("AUTH_CACHE_S", "2"))
# Usage counts and telemetry rows are committed in batches by a background thread (one fsync for
# many requests); off = written inline (unit tests).
HEARTH_DEFERRED_WRITES = _env_bool("DEFERRED_WRITES", True)
# A token's usage (its rate-limit count and last use) is written at most once per this many seconds
# per web process: one UPDATE for all of a typist's keystrokes in that time, all tokens' in one commit.
# Eight typing clients (a keystroke each 1.3 s) cost the web tier 4.5 ms of CPU a completion with a
# write per request, 4.2 at 1 s and 3.0 at 5 s. Another web process sees these requests that much later:
# across processes, the rate limit may let through what the others served in that time.
HEARTH_USAGE_FLUSH_S = float(_env("USAGE_FLUSH_S", "5"))
# RAM for prompt caches parked off llama.cpp's KV cache (0 = off): the caches of users whose slot
# serves someone else, for when the users outnumber the slots.
HEARTH_ENGINE_KV_CACHE_MB = int(_env("ENGINE_KV_CACHE_MB", "512"))
