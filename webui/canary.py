"""The canary page of a model version: put a candidate in front of a share of developers first, read
whether they accept its suggestions more than the served model's (with an interval), then promote
it to everyone or roll it back. The dashboard shows the same comparison while a canary runs."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from appliance.audit import request_client_ip
from appliance.errors import HearthError
from trainer.models import ModelVersion
from webui.reports import html_table
from webui.usage import MODEL_HEADERS, model_row

DEFAULT_PERCENT = 10


class CanaryForm(forms.Form):
    percent = forms.IntegerField(
        label="Share of developers (%)",
        min_value=1,
        max_value=99,
        initial=DEFAULT_PERCENT,
        help_text="Each developer is in or out for the whole canary (they keep one model and its cache); "
        "raising the share only adds developers.",
    )
    reason = forms.CharField(
        label="Reason",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Needed when the promotion gate did not pass this version.",
    )

    def __init__(self, *args, needs_reason: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.needs_reason = needs_reason
        if not needs_reason:
            del self.fields["reason"]

    def clean_reason(self) -> str:
        reason = self.cleaned_data.get("reason", "").strip()
        if self.needs_reason and not reason:
            raise forms.ValidationError(
                "The promotion gate did not pass this version: say why developers should try it."
            )
        return reason


def canary_summary(version: ModelVersion) -> dict:
    """The running canary's figures beside the served model's since it started, and the verdict."""
    from inference.canary import canary_comparison

    figures, comparison = canary_comparison(version)
    labels = {"canary": f"canary: version {version.pk}", "served": "served model (everyone else)"}
    rows = [model_row(labels[arm], figures[arm]) for arm in ("canary", "served")]
    return {
        "canary_version": version,
        "canary_table": html_table(("arm", *MODEL_HEADERS[1:]), rows),
        "canary_sentence": comparison.sentence,
        "canary_verdict": comparison.verdict,
    }


def _post(request, version: ModelVersion, form: CanaryForm | None) -> bool:
    """Perform the page's POST; True when it was done (then the page redirects)."""
    from trainer.versions import model_version_canary_end, model_version_canary_start

    actor, ip = request.user.get_username(), request_client_ip(request)
    if "rollback" in request.POST:
        model_version_canary_end(version=version, actor=actor, ip=ip)
        messages.success(
            request, f"Version {version.pk}: rolled back; every developer gets the served model."
        )
        return True
    if form is None or not form.is_valid():
        return False
    percent = form.cleaned_data["percent"]
    model_version_canary_start(
        version=version, percent=percent, reason=form.cleaned_data.get("reason", ""), actor=actor, ip=ip
    )
    messages.success(
        request,
        f"Version {version.pk} is served to {percent}% of developers within seconds; the rest keep the served model.",
    )
    return True


def version_canary_view(request, admin_site, pk: int):
    """GET: the canary's comparison (while it runs) and the form to start it or change its share.
    POST: start / change the share, or roll back (`rollback`)."""
    from trainer.versions import canary_version, served_version

    version = get_object_or_404(ModelVersion.objects.select_related("base"), pk=pk)
    page = reverse("admin:trainer_modelversion_canary", args=[pk])
    other = canary_version()
    other = other if other is not None and other.pk != version.pk else None
    is_candidate = version.status == ModelVersion.Status.CANDIDATE
    form = None
    if is_candidate and other is None:
        initial = {"percent": version.canary_percent or DEFAULT_PERCENT}
        needs_reason = version.gate_passed is not True and not version.canary_percent
        data = request.POST if request.method == "POST" and "rollback" not in request.POST else None
        form = CanaryForm(data, initial=initial, needs_reason=needs_reason)
    if request.method == "POST":
        try:
            if _post(request, version, form):
                return redirect(page)
        except HearthError as exc:
            messages.error(request, f"Version {version.pk}: {exc}")
            return redirect(page)
    served = served_version()
    context = {
        **admin_site.each_context(request),
        "title": f"Try version {version.pk} on a share of developers",
        "version": version,
        "form": form,
        "other_canary": other,
        "served": served,
        "is_candidate": is_candidate,
        "opts": ModelVersion._meta,
        **(canary_summary(version) if version.is_canary else {}),
    }
    return TemplateResponse(request, "admin/hearth/canary.html", context)
