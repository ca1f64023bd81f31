import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

from appliance.fields import glob_lines


class ApiToken(models.Model):
    """A developer's bearer token. Only a SHA-256 digest is stored; `prefix` finds the row fast."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    # Per-token rate limit: a fixed one-minute window counted in the same (deferred) UPDATE that
    # stamps last_used_at, so it holds across web workers.
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute; empty = the appliance default (HEARTH_RATE_LIMIT).",
    )
    rate_window = models.BigIntegerField(default=0, editable=False)
    rate_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


RESPONSE_FILTER_NAMES = ("email", "url", "ip", "credential", "insecure")


def response_filters_default() -> list[str]:
    return list(RESPONSE_FILTER_NAMES)


class ServingPolicy(models.Model):
    """The admin's switches for serving: one row (pk=1), edited in the admin."""

    telemetry_enabled = models.BooleanField(
        default=False, help_text="Record one row per completion (model, language, latency) and Tabby events."
    )
    telemetry_content = models.BooleanField(
        default=False,
        help_text="Also store prompts, suggestions and accepted-code snapshots (needs telemetry).",
    )
    flow_logs_enabled = models.BooleanField(
        default=False,
        help_text="Store a per-request flow log (request, phases, response) for troubleshooting.",
    )
    retention_days = models.PositiveSmallIntegerField(
        default=28, help_text="Telemetry, events, snapshots and flow logs older than this are purged daily."
    )
    exclusion_globs = models.TextField(
        blank=True,
        help_text="One glob per line (e.g. **/secrets/** or *.pem), matched ignoring case against the path the "
        "IDE sends (file:// URIs and Windows paths understood). Matching files get no completion, are never "
        "used as context, and nothing of them is stored.",
    )
    response_filters = models.JSONField(
        default=response_filters_default,
        blank=True,
        help_text="The response filters in force (email, url, ip, credential, insecure): a suggestion is cut "
        "before the first match of any of them; insecure cuts before the first line that introduces an obvious "
        "vulnerability (SQL or a shell command built from strings, eval of input, unsafe deserialisation, TLS "
        "verification off, HTML built from strings, a password under MD5/SHA-1).",
    )
    repository_context = models.BooleanField(
        default=True,
        help_text="Completions carry snippets of the served model's repositories (from its dataset's code "
        "index, never the current file) when the served version was measured better with them.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "serving policy"
        verbose_name_plural = "serving policies"

    def __str__(self) -> str:
        return "Serving policy"

    @property
    def globs(self) -> list[str]:
        return glob_lines(self.exclusion_globs)


class BlockedCode(models.Model):
    """Admin-supplied code that suggestions must never reproduce (≥150 whitespace-stripped chars)."""

    name = models.CharField(max_length=200)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "blocked snippet"
        verbose_name_plural = "blocked snippets"

    def __str__(self) -> str:
        return self.name


class FilterCount(models.Model):
    """How often each response filter acted, per day (kept whether or not telemetry is on)."""

    day = models.DateField()
    name = models.CharField(max_length=32)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "name"], name="filter_count_day_name")]

    def __str__(self) -> str:
        return f"{self.day} {self.name}: {self.count}"


class CompletionRecord(models.Model):
    """One served completion (telemetry on): what answered, how fast, and what the filters did."""

    completion_id = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dialect = models.CharField(max_length=16)  # openai | infill | completion | tabby
    model = models.CharField(max_length=100)
    model_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="ModelVersion pk; empty = base."
    )
    language = models.CharField(max_length=32, default="unknown")
    filepath = models.CharField(
        max_length=1000, blank=True, help_text="The file the IDE named (stored only with the prompt)."
    )
    arm = models.CharField(
        max_length=16, default="served", help_text="served, or canary: the share trying a candidate."
    )
    latency_ms = models.FloatField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16)  # ok | empty | excluded | filtered | superseded
    filters = models.JSONField(default=list, blank=True)
    prompt = models.TextField(blank=True)
    suggestion = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["language", "model"])]

    def __str__(self) -> str:
        return self.completion_id


class CompletionEvent(models.Model):
    """A Tabby view / select / dismiss event about one completion."""

    completion_id = models.CharField(max_length=64, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16)
    choice_index = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    payload = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.completion_id}"


class CodeSnapshot(models.Model):
    """The code around an accepted completion some time later (how much of it survived)."""

    completion_id = models.CharField(max_length=64, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    filepath = models.CharField(max_length=1000, blank=True)
    language = models.CharField(max_length=32, default="unknown")
    elapsed_s = models.PositiveIntegerField(default=0, help_text="Seconds since the completion was accepted.")
    text = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"snapshot {self.completion_id}"


class FlowLog(models.Model):
    """One API request, step by step (only while flow logs are switched on)."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    path = models.CharField(max_length=200)
    status_code = models.PositiveSmallIntegerField()
    latency_ms = models.FloatField()
    steps = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.path} {self.status_code}"


class EngineSwapTurn(models.Model):
    """Which engine replica is swapping models now (one row). A promotion rolls through the replicas
    one at a time: each takes this turn before it loads the new model, and gives it back after."""

    holder = models.CharField(max_length=200, blank=True)  # "" when no replica is swapping
    expires_at = models.DateTimeField(default=timezone.now)  # a holder that died loses it then

    def __str__(self) -> str:
        return self.holder or "(free)"
