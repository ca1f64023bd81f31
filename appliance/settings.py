"""Django settings for Hearth: the only module that reads the environment (prefix HEARTH_)."""

from __future__ import annotations

import os
from pathlib import Path

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

DEBUG = _env_bool("DEBUG", False)
SECRET_KEY = _env("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and _env_bool("PRODUCTION", False):
        raise RuntimeError("HEARTH_SECRET_KEY must be set when HEARTH_PRODUCTION=1")
    SECRET_KEY = "hearth-insecure-single-box-key"

ALLOWED_HOSTS = [h for h in _env("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver").split(",") if h]

# Instance root: every artifact (mirrors, datasets, runs, models, database) lives below it.
HEARTH_HOME = Path(_env("HOME", str(BASE_DIR / "instance"))).resolve()

# Local scratch of this process (temporary files that never need to be shared: a key handed to one git
# call, a converter's work files). Worker hosts keep it on local disk while HEARTH_HOME is shared storage.
# Empty: HEARTH_HOME/tmp.
HEARTH_SCRATCH = _env("SCRATCH", "")

# The engine process that holds the served GGUF listens on loopback only.
HEARTH_ENGINE_HOST = _env("ENGINE_HOST", "127.0.0.1")
HEARTH_ENGINE_PORT = int(_env("ENGINE_PORT", "8765"))
# Several engine replicas (comma-separated http://host:port); empty = the one engine above. Each user
# sticks to one replica (its prompt cache); a replica that fails is left out for ENGINE_RETRY_S seconds,
# then health-checked before it takes its users back.
HEARTH_ENGINE_URLS = [u.strip().rstrip("/") for u in _env("ENGINE_URLS", "").split(",") if u.strip()]
HEARTH_ENGINE_RETRY_S = float(_env("ENGINE_RETRY_S", "5"))
HEARTH_ENGINE_THREADS = int(_env("ENGINE_THREADS", str(os.cpu_count() or 2)))
HEARTH_ENGINE_CTX = int(_env("ENGINE_CTX", "2048"))
HEARTH_PROMOTION_MARGIN = float(_env("PROMOTION_MARGIN", "0.0"))
# The promotion gate also needs a paired, significant win: an exact McNemar test at this level.
HEARTH_PROMOTION_ALPHA = float(_env("PROMOTION_ALPHA", "0.05"))
HEARTH_BASE_MODEL = _env("BASE_MODEL", "smollm2-135m-instruct")
HEARTH_WEB_PORT = int(_env("WEB_PORT", "8000"))

# Mirrors: how often the scheduled sync fetches every repository (0 switches the schedule off),
# and the key that encrypts intranet credentials at rest (default: derived from SECRET_KEY).
HEARTH_MIRROR_SYNC_MINUTES = int(_env("MIRROR_SYNC_MINUTES", "60"))
HEARTH_CREDENTIAL_KEY = _env("CREDENTIAL_KEY", "")
# Datasets: exclusion globs (gitignore syntax, comma-separated) applied to every repository.
HEARTH_DATASET_EXCLUDE = [g.strip() for g in _env("DATASET_EXCLUDE", "").split(",") if g.strip()]
# Training crash safety: a running job refreshes its heartbeat; the watchdog requeues (resume from
# the last checkpoint) a run whose heartbeat is older than the stale limit, up to max attempts.
HEARTH_TRAINING_HEARTBEAT_S = float(_env("TRAINING_HEARTBEAT_S", "10"))
HEARTH_TRAINING_STALE_S = float(_env("TRAINING_STALE_S", "90"))
HEARTH_TRAINING_MAX_ATTEMPTS = int(_env("TRAINING_MAX_ATTEMPTS", "3"))
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
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS: list[dict] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = HEARTH_HOME / "static"
# The admin's static files are served by WhiteNoise straight from the installed apps (no collectstatic).
WHITENOISE_USE_FINDERS = True

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
HEARTH_ENGINE_POLL_S = float(_env("ENGINE_POLL_S", "2"))
HEARTH_RATE_LIMIT = int(_env("RATE_LIMIT", "600"))
HEARTH_POLICY_CACHE_S = float(_env("POLICY_CACHE_S", "5"))
# Usage counts and telemetry rows are committed in batches by a background thread (one fsync for
# many requests); off = written inline (unit tests).
HEARTH_DEFERRED_WRITES = _env_bool("DEFERRED_WRITES", True)
# RAM for users' prompt caches parked while their slot serves someone else (0 = off).
HEARTH_ENGINE_KV_CACHE_MB = int(_env("ENGINE_KV_CACHE_MB", "512"))
