"""Admin forms. The training settings are generated from `LoraSettings` (type, default, help and
choices of every field), never written out twice."""

from __future__ import annotations

import uuid
from dataclasses import MISSING, fields
from functools import cached_property

from django import forms
from django.conf import settings

from inference.models import ServingPolicy
from trainer.training.config import LoraSettings

SETTINGS_PREFIX = "lora_"
MAIN_SETTINGS = ("preset",)  # shown with the data; the rest under "Advanced settings"
TEST_BASE_PREFIX = "hearth-micro"  # Hearth's micro models: offered only with HEARTH_SHOW_TEST_BASES


def _number(value: float) -> str:
    """1000000 → "1,000,000", 0.99 → "0.99": a limit as an admin reads it."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _setting_field(f) -> forms.Field:
    from trainer.training.config import LIMITS, label

    help_text, initial = f.metadata.get("help", ""), f.default if f.default is not MISSING else None
    if f.name in LIMITS:
        low, high = (_number(v) for v in LIMITS[f.name])
        help_text += f" Between {low} and {high}."
    choices = f.metadata.get("choices")
    if choices:
        return forms.ChoiceField(
            choices=[(c, c) for c in choices], initial=initial, help_text=help_text, label=label(f.name)
        )
    kind = {"bool": forms.BooleanField, "int": forms.IntegerField, "float": forms.FloatField}.get(
        str(f.type), forms.CharField
    )
    return kind(
        initial=initial, help_text=help_text, label=label(f.name), required=kind is not forms.BooleanField
    )


def settings_fields() -> dict[str, forms.Field]:
    """One form field per LoraSettings field, named with SETTINGS_PREFIX."""
    return {SETTINGS_PREFIX + f.name: _setting_field(f) for f in fields(LoraSettings)}


class BaseChoiceField(forms.ModelChoiceField):
    """Bases by their display name (the slug beside it where it says more), the one served now marked."""

    served_pk: int | None = None

    def label_from_instance(self, obj) -> str:
        name = obj.display_name or obj.slug
        text = name if name.lower() == obj.slug.lower() else f"{name} ({obj.slug})"
        return f"{text} — served now" if obj.pk == self.served_pk else text


class TrainingStartForm(forms.Form):
    """What an admin chooses to start a custom model: data, base, settings, and an override reason.
    Its defaults are the production path: the base served now (else the appliance's default base),
    and a one-time `submission` key so a double submit starts one run."""

    repositories = forms.ModelMultipleChoiceField(
        queryset=None,
        widget=forms.CheckboxSelectMultiple,
        help_text="Ready (synced) repositories; the dataset reads each at its synced commit.",
    )
    languages = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every recognised language (each repository's own choice still applies).",
    )
    exclude_globs = forms.CharField(
        label="Exclude files",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Files to leave out, one pattern a line (gitignore syntax), on top of each repository's own.",
    )
    accepted_completions = forms.BooleanField(
        required=False,
        label="Include accepted completions",
        help_text="Code developers accepted in their IDEs trains too, as fill-in-the-middle samples: scrubbed and "
        "excluded like repository files, never from a held-out file, never held out or evaluated on.",
    )
    base = BaseChoiceField(
        queryset=None,
        label="Base model",
        help_text="The ready base model to fine-tune; preselected: the one served now, else the appliance's "
        "default (HEARTH_BASE_MODEL).",
    )
    override_reason = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Only when the retrain rate limit applies: why this run cannot wait (recorded in the audit log).",
    )
    # Made once when the form is shown, carried through previews: the same key twice is one run.
    submission = forms.RegexField(
        regex=r"^[0-9a-f]{0,64}$", required=False, max_length=64, widget=forms.HiddenInput
    )

    def __init__(self, *args, **kwargs):
        from trainer.models import BaseModel, Repository
        from trainer.tools.languages import ALL_LANGUAGES
        from trainer.versions import served_version

        super().__init__(*args, **kwargs)
        ready = Repository.objects.filter(status=Repository.Status.READY).order_by("name")
        self.fields["repositories"].queryset = ready
        self.fields["repositories"].initial = list(ready)
        self.fields["languages"].choices = [(lang, lang) for lang in ALL_LANGUAGES]
        bases = BaseModel.objects.filter(status=BaseModel.Status.READY).order_by("display_name", "slug")
        if not settings.HEARTH_SHOW_TEST_BASES:
            bases = bases.exclude(slug__startswith=TEST_BASE_PREFIX)
        served = served_version()
        field = self.fields["base"]
        field.queryset, field.served_pk = bases, served.base_id if served else None
        field.empty_label = None  # one is always preselected: no "---------" to pick by mistake
        field.initial = (
            bases.filter(pk=field.served_pk).first()
            or bases.filter(slug=settings.HEARTH_BASE_MODEL).first()
            or bases.first()
        )
        self.fields["submission"].initial = uuid.uuid4().hex
        self._accepted_field()
        self.fields.update(settings_fields())

    def _accepted_field(self) -> None:
        """The accepted-completions box names the retention window, and is off with the reason while
        the telemetry policy does not collect content (a disabled field ignores what is posted)."""
        from appliance.errors import DatasetError
        from trainer.datasets.accepted import accepted_provider

        field = self.fields["accepted_completions"]
        try:
            policy = accepted_provider().policy()
        except DatasetError as exc:
            field.disabled, field.help_text = True, str(exc)
            return
        field.label = policy.label
        if policy.refusal:
            field.disabled, field.help_text = True, policy.refusal

    @cached_property
    def base_missing(self) -> str:
        """Why there is no base to choose and what registers one (HTML), or "" when there is one."""
        from django.utils.html import format_html

        from trainer.models import BaseModel

        if self.fields["base"].queryset.exists():
            return ""
        hidden = not settings.HEARTH_SHOW_TEST_BASES and (
            BaseModel.objects.filter(
                status=BaseModel.Status.READY, slug__startswith=TEST_BASE_PREFIX
            ).exists()
        )
        return format_html(
            "No base model is ready to fine-tune: the default base, {}, is not registered yet. On the "
            "appliance, <code>hearth basemodel_fetch</code> registers it (the installer does this); "
            "<code>hearth basemodel_import FOLDER</code> imports another.{}",
            settings.HEARTH_BASE_MODEL,
            " Test bases are hidden (HEARTH_SHOW_TEST_BASES)." if hidden else "",
        )

    def main_settings(self):
        return [self[SETTINGS_PREFIX + name] for name in MAIN_SETTINGS]

    def advanced_settings(self):
        return [
            self[name]
            for name in self.fields
            if name.startswith(SETTINGS_PREFIX) and name[len(SETTINGS_PREFIX) :] not in MAIN_SETTINGS
        ]

    def advanced_errors(self) -> bool:
        """Whether an advanced setting is refused (its section opens to show why)."""
        return any(field.errors for field in self.advanced_settings())

    def clean(self):
        from appliance.errors import HearthError
        from trainer.training.config import SettingsInvalid

        data = super().clean()
        values = {
            name[len(SETTINGS_PREFIX) :]: data[name]
            for name in self.fields
            if name.startswith(SETTINGS_PREFIX) and name in data
        }
        if len(values) == len(fields(LoraSettings)):
            try:
                data["settings"] = LoraSettings.from_dict(values)
            except SettingsInvalid as exc:  # each sentence beside its field, naming the limit
                for name, message in exc.problems.items():
                    self.add_error(SETTINGS_PREFIX + name, message)
            except HearthError as exc:
                raise forms.ValidationError(str(exc)) from exc
        try:
            data["options"] = self.dataset_options(data)
        except HearthError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data

    @staticmethod
    def dataset_options(data: dict):
        from trainer.datasets.builder import DatasetOptions

        globs = (line.strip() for line in (data.get("exclude_globs") or "").splitlines())
        return DatasetOptions(
            languages=tuple(data.get("languages") or ()),
            exclude_globs=tuple(g for g in globs if g and not g.startswith("#")),
            accepted_completions=bool(data.get("accepted_completions")),
        )


class TokenCreateForm(forms.Form):
    """A new API token: for whom, a name, an expiry and its own rate limit."""

    user = forms.ModelChoiceField(queryset=None, help_text="Whose IDE will use it.")
    name = forms.CharField(
        max_length=100, required=False, help_text="What it is for, e.g. 'laptop, VS Code'."
    )
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: expires after HEARTH_TOKEN_DAYS days (90 unless set; 0 = never).",
    )
    rate_limit_per_minute = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="Requests per minute; empty: the appliance default.",
    )

    def __init__(self, *args, request_user, **kwargs):
        from django.contrib.auth import get_user_model

        super().__init__(*args, **kwargs)
        self.request_user = request_user
        users = get_user_model().objects.filter(is_active=True).order_by("username")
        # A superuser makes tokens for anyone; a staff user only for themself.
        self.fields["user"].queryset = (
            users if request_user.is_superuser else users.filter(pk=request_user.pk)
        )
        self.fields["user"].initial = request_user.pk
        days = settings.HEARTH_TOKEN_DAYS
        self.fields["expires_at"].help_text += (
            f" On this appliance: {days} days." if days else " On this appliance: never."
        )
        if token_rate_limit_cap(request_user) is not None:
            self.fields[
                "rate_limit_per_minute"
            ].help_text += f" At most {settings.HEARTH_RATE_LIMIT}, the appliance default."

    def clean_rate_limit_per_minute(self) -> int | None:
        value = self.cleaned_data.get("rate_limit_per_minute")
        cap = token_rate_limit_cap(self.request_user)
        if value is not None and cap is not None and value > cap:
            raise forms.ValidationError(
                f"At most {cap} requests per minute, the appliance default (HEARTH_RATE_LIMIT): "
                "only a superuser gives a token a higher limit."
            )
        return value


def token_rate_limit_cap(user) -> int | None:
    """The highest rate limit `user` may give a token: the appliance default for anyone but a
    superuser; None when there is no cap (a superuser, or an appliance default of 0, which means no
    limit at all). An empty limit means the default, so it is always allowed."""
    if user.is_superuser or not settings.HEARTH_RATE_LIMIT:
        return None
    return settings.HEARTH_RATE_LIMIT


TELEMETRY_CONTENT_NEEDS_TELEMETRY = (
    "Content collection needs telemetry: tick “Telemetry enabled” as well, or untick this."
)


class TelemetryRuleMixin:
    """Prompts, suggestions and snapshots are stored only while telemetry is on: the rule of the
    Policies page and of the stock Serving policy page alike."""

    def clean(self):
        data = super().clean()
        if data.get("telemetry_content") and not data.get("telemetry_enabled"):
            self.add_error("telemetry_content", TELEMETRY_CONTENT_NEEDS_TELEMETRY)
        return data


class ServingPolicyForm(TelemetryRuleMixin, forms.ModelForm):
    """The stock Serving policy page's form (the Policies page is the usual one)."""

    class Meta:
        model = ServingPolicy
        fields = "__all__"


BLOCKED_UPLOAD_MAX_BYTES = 10 * 1024 * 1024


def _pattern_lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


class PoliciesForm(TelemetryRuleMixin, forms.Form):
    """Every admin policy on one page: telemetry and content collection, flow logs, retention, content
    exclusion for serving, the global dataset exclusion, response filters, repository context at
    serving, and a blocked-code upload.
    The serving fields (and their help texts) come from ServingPolicy, the dataset one from DatasetPolicy."""

    response_filters = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Ticked filters cut a suggestion just before the first email address, URL, IP address "
        "or credential it contains. Unticked ones let such text through to the IDE.",
    )
    dataset_exclude_globs = forms.CharField(
        label="Dataset exclusion",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
    )
    blocked_code = forms.FileField(
        label="Add to the blocked-code corpus",
        required=False,
        help_text="A UTF-8 text file (at most 10 MB) of code that suggestions must never reproduce: "
        "a suggestion sharing 150 or more characters (whitespace ignored) with it is discarded.",
    )

    def __init__(self, *args, **kwargs):
        from django.forms.models import fields_for_model

        from inference.models import RESPONSE_FILTER_NAMES, ServingPolicy
        from trainer.models import DatasetPolicy
        from webui.policies import SERVING_FIELDS

        super().__init__(*args, **kwargs)
        model_fields = fields_for_model(
            ServingPolicy, fields=[f for f in SERVING_FIELDS if f != "response_filters"]
        )
        model_fields["retention_days"] = forms.IntegerField(
            min_value=1, max_value=3650, help_text=model_fields["retention_days"].help_text
        )
        model_fields["exclusion_globs"].label = "Content exclusion (serving)"
        model_fields["exclusion_globs"].widget.attrs.update(rows=4, cols=60)
        self.fields = {**model_fields, **self.fields}
        self.fields["response_filters"].choices = [(n, n) for n in RESPONSE_FILTER_NAMES]
        self.fields["dataset_exclude_globs"].help_text = (
            DatasetPolicy._meta.get_field("exclude_globs").help_text
            + " Applies to datasets built from now on; until saved here, HEARTH_DATASET_EXCLUDE."
        )

    def clean_dataset_exclude_globs(self) -> str:
        import pathspec

        text = self.cleaned_data["dataset_exclude_globs"]
        for n, line in _pattern_lines(text):
            if line.startswith("#"):
                continue
            try:
                pathspec.GitIgnoreSpec.from_lines([line])
            except ValueError as exc:  # pathspec's GitIgnorePatternError
                raise forms.ValidationError(f"Line {n}, {line!r}, is not a valid gitignore pattern ({exc}).")
        return text

    def clean_blocked_code(self) -> tuple[str, str] | None:
        """(file name, text) of the upload, or None."""
        from inference.filters import WINDOW, stripped

        upload = self.cleaned_data.get("blocked_code")
        if not upload:
            return None
        if upload.size > BLOCKED_UPLOAD_MAX_BYTES:
            raise forms.ValidationError(f"{upload.name} is {upload.size:,} bytes; the limit is 10 MB a file.")
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(f"{upload.name} is not UTF-8 text.") from exc
        if len(stripped(text)) < WINDOW:
            raise forms.ValidationError(
                f"{upload.name} has fewer than {WINDOW} characters besides whitespace: "
                "no suggestion could ever match it."
            )
        return upload.name, text
