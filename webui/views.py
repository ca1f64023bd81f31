"""Custom admin views: start a custom model (with a dataset preview), watch a run live, create a
token (shown once), confirm a version's lifecycle action, download its GGUF files. Each parses the
request, calls one service, records the action in the audit log and renders."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from appliance.audit import request_audit, request_client_ip
from appliance.errors import HearthError
from trainer.models import ModelVersion, TrainingRun

# action → (title, consequence, the model permission it needs)
VERSION_ACTIONS = {
    "promote": (
        "Promote (serve) this version",
        (
            "IDEs get completions from it within seconds; the version "
            "served now is retired. Choosing a retired version rolls back to it."
        ),
        "change",
    ),
    "retire": (
        "Retire this version",
        ("It stops being served; the base model is served unless another version is promoted."),
        "change",
    ),
    "delete": (
        "Delete this version and its files",
        ("Its GGUF files and adapter are removed from disk. This cannot be undone."),
        "delete",
    ),
}


def version_action_permission(*, action: str, **_) -> str:
    """The model permission a version action's page needs: "delete" to delete, "change" otherwise
    (an unknown action then answers 404)."""
    return VERSION_ACTIONS[action][2] if action in VERSION_ACTIONS else "change"


def training_start_view(request, admin_site):
    """GET: the form (with its one-time submission key). POST with `preview`: the dataset preview and
    time estimate. POST with `start`: create the run (its dataset is built by a job first) and open
    its live page; the same form submitted twice opens the run the first submit started."""
    from trainer.pipeline import dataset_preview, training_start
    from trainer.training.services import RetrainLimited
    from webui.dataset_report import accepted_figures
    from webui.forms import TrainingStartForm

    form = TrainingStartForm(request.POST or None)
    preview, refused_by = None, None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        repos = list(data["repositories"])
        try:
            if "start" in request.POST:
                key = data["submission"]
                again = bool(key) and TrainingRun.objects.filter(submission=key).exists()
                run = training_start(
                    repositories=repos,
                    base=data["base"],
                    settings=data["settings"],
                    options=data["options"],
                    override_reason=data["override_reason"],
                    actor=request.user.get_username(),
                    ip=request_client_ip(request),
                    submission=key,
                )
                if again:
                    messages.info(
                        request, f"Run {run.pk} was already started from this form: nothing new was started."
                    )
                else:
                    messages.success(
                        request,
                        f"Run {run.pk} queued: dataset {run.dataset_id} is built first, then it trains.",
                    )
                return redirect(reverse("admin:trainer_trainingrun_change", args=[run.pk]))
            preview = dataset_preview(
                repositories=repos, base=data["base"], settings=data["settings"], options=data["options"]
            )
        except RetrainLimited as exc:
            form.add_error("override_reason", "The retrain limit applies: give a reason to start anyway.")
            refused_by = exc.run
        except HearthError as exc:
            form.add_error(None, str(exc))
    base = form.cleaned_data.get("base") if form.is_bound else None
    base = base or form.fields["base"].initial
    limit, limit_run = _retrain_limit(base)
    context = {
        **admin_site.each_context(request),
        "title": "Start a custom model",
        "form": form,
        "preview": preview,
        "accepted": accepted_figures(preview.report) if preview else None,
        "rate_limit": limit,
        "limit_run": refused_by or limit_run,
        "opts": TrainingRun._meta,
    }
    return TemplateResponse(request, "admin/hearth/training_start.html", context)


def _retrain_limit(base) -> tuple[str, TrainingRun | None]:
    """Why the retrain rate limit refuses `base` now and the run that holds it, or ("", None)."""
    from trainer.training.services import RetrainLimited, rate_limit_check

    if base is None:
        return "", None
    try:
        rate_limit_check(base)
    except RetrainLimited as exc:
        return str(exc), exc.run
    return "", None


def run_live_view(request, admin_site, pk: int):
    """The fragment the run's page fetches every few seconds: progress, chart, log tail, attempts."""
    from webui.live import run_live_context

    run = get_object_or_404(TrainingRun, pk=pk)
    return TemplateResponse(request, "admin/hearth/run_live.html", run_live_context(run))


@require_POST
def run_cancel_view(request, admin_site, pk: int):
    from trainer.training.services import training_run_cancel

    run = get_object_or_404(TrainingRun, pk=pk)
    try:
        training_run_cancel(run=run)
        request_audit(request, action="training.cancel", target=f"run {run.pk}")
        messages.info(request, f"Run {run.pk}: cancel requested (it checkpoints first).")
    except HearthError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("admin:trainer_trainingrun_change", args=[run.pk]))


def token_create_view(request, admin_site):
    """Create a token; its raw value is shown on the next page once, never stored."""
    from inference.auth import token_create
    from inference.models import ApiToken
    from webui.forms import TokenCreateForm

    form = TokenCreateForm(request.POST or None, request_user=request.user)
    context = {
        **admin_site.each_context(request),
        "title": "Create an API token",
        "form": form,
        "opts": ApiToken._meta,
    }
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        token, raw = token_create(
            username=data["user"].get_username(), name=data["name"], expires_at=data["expires_at"]
        )
        if data["rate_limit_per_minute"]:
            ApiToken.objects.filter(pk=token.pk).update(rate_limit_per_minute=data["rate_limit_per_minute"])
        request_audit(
            request,
            action="token.create",
            target=f"token {token.prefix}",
            detail=f"for {data['user'].get_username()}; name {data['name']!r}",
        )
        context.update(title="Your new API token", token=token, raw=raw)
        return TemplateResponse(request, "admin/hearth/token_created.html", context)
    return TemplateResponse(request, "admin/hearth/token_create.html", context)


class PromotionReasonForm(forms.Form):
    """Why an admin serves a version the promotion gate kept: required, kept on the version."""

    reason = forms.CharField(
        label="Why serve it anyway?",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        error_messages={
            "required": "Give a reason: serving a version the gate kept changes every developer's completions."
        },
        help_text="Kept on the version, written to the audit log and sent to every admin; the version is "
        "flagged on the dashboard until another one is promoted.",
    )


def _reference_text(figures, served: ModelVersion | None) -> str:
    """What the evaluation compared the version with, and whether that is what is served now."""
    now = f"version {served.pk}" if served else "the base model"
    same = figures.reference_pk == served.pk if served else figures.reference == "base"
    if same:
        return f"{figures.reference_name}, served now"
    if figures.reference == "base":
        return f"the base model ({now}, served now, was not part of this evaluation)"
    if served:
        return (
            f"{figures.reference_name}, served when this version was evaluated ({now}, served now, was not)"
        )
    return f"{figures.reference_name}, served when this version was evaluated (the base model is served now)"


def promotion_context(version: ModelVersion) -> dict:
    """What the promote page restates before an admin serves `version`: the gate's verdict, the figures
    behind it as (label, sentence) rows, what is served now and what promoting does to it."""
    from trainer.evaluation.services import decision_figures
    from trainer.models import EvaluationReport
    from trainer.versions import served_version

    served = served_version(exclude_pk=version.pk)
    report = version.reports.filter(status=EvaluationReport.Status.DONE).order_by("-created_at").first()
    figures = decision_figures(report) if report else None
    if version.gate_passed is True:
        verdict = "The promotion gate passed this version: a paired, significant win in exact match."
    elif version.gate_passed is False:
        verdict = "The promotion gate kept this version: it did not beat the model served now."
    else:
        verdict = "The promotion gate kept this version: it was never evaluated."
    facts = []
    if figures is not None:
        facts = [
            (
                "Held-out lines of your code",
                f"{figures.wins:,} got better, {figures.losses:,} got worse, of {figures.tasks:,}",
            ),
            ("Gain in exact match", figures.gain_points),
            ("Compared with", _reference_text(figures, served)),
            # The general-code (forgetting) arm joins these rows once the evaluation scores it.
        ]
    now = f"version {served.pk}, served now, is retired" if served else "the base model stops being served"
    return {
        "verdict": verdict,
        "gate_passed": version.gate_passed is True,
        "facts": facts,
        "report": report,
        "consequence": f"Every developer's IDE gets its completions from this version within seconds; {now}.",
    }


def _version_promote(request, admin_site, version: ModelVersion):
    """The promote page and its POST. A version the gate kept is served only with a typed reason; a
    second submit of the same form (the version is served already) only says so."""
    from trainer.versions import PromotionNeedsReason, model_version_promote

    page = reverse("admin:trainer_modelversion_change", args=[version.pk])
    served_already = version.status == ModelVersion.Status.PROMOTED
    needs_reason = version.gate_passed is not True and not served_already
    form = PromotionReasonForm(request.POST if request.method == "POST" else None) if needs_reason else None
    if request.method == "POST":
        if served_already:
            messages.info(request, f"Version {version.pk} is served already.")
            return redirect(page)
        if form is None or form.is_valid():
            try:
                model_version_promote(
                    version=version,
                    reason=form.cleaned_data["reason"] if form else "",
                    actor=request.user.get_username(),
                    ip=request_client_ip(request),
                )
            except PromotionNeedsReason as exc:
                if form is None:
                    messages.error(request, f"Version {version.pk}: {exc}")
                    return redirect(page)
                form.add_error("reason", str(exc))
            except HearthError as exc:
                version.refresh_from_db(fields=["status"])
                if version.status == ModelVersion.Status.PROMOTED:  # a second submit raced the first
                    messages.info(request, f"Version {version.pk} is served already.")
                else:
                    messages.error(request, f"Version {version.pk}: {exc}")
                return redirect(page)
            else:
                request_audit(request, action="model.promote", target=f"version {version.pk}")
                messages.success(
                    request,
                    f"Version {version.pk} is served now"
                    + (" against the promotion gate; every admin has been told." if needs_reason else "."),
                )
                return redirect(page)
    if served_already:
        title = "This version is served now"
    elif needs_reason:
        title = "Serve this version against the promotion gate?"
    else:
        title = f"{VERSION_ACTIONS['promote'][0]}?"
    context = {
        **admin_site.each_context(request),
        **promotion_context(version),
        "title": title,
        "version": version,
        "action": "promote",
        "served_already": served_already,
        "form": form,
        "opts": ModelVersion._meta,
    }
    return TemplateResponse(request, "admin/hearth/confirm.html", context)


def version_action_view(request, admin_site, pk: int, action: str):
    """A confirmation page for promote / retire / delete; the POST performs it."""
    from trainer import versions

    if action not in VERSION_ACTIONS:
        raise Http404(action)
    version = get_object_or_404(ModelVersion, pk=pk)
    if action == "promote":
        return _version_promote(request, admin_site, version)
    title, consequence, _ = VERSION_ACTIONS[action]
    if request.method == "POST":
        try:
            getattr(versions, f"model_version_{action}")(version=version)
            request_audit(request, action=f"model.{action}", target=f"version {pk}")
            messages.success(request, f"Version {pk}: {action} done.")
        except HearthError as exc:
            messages.error(request, f"Version {pk}: {exc}")
            return redirect(reverse("admin:trainer_modelversion_change", args=[pk]))
        if action == "delete":
            return redirect(reverse("admin:trainer_modelversion_changelist"))
        return redirect(reverse("admin:trainer_modelversion_change", args=[pk]))
    context = {
        **admin_site.each_context(request),
        "title": f"{title}?",
        "version": version,
        "consequence": consequence,
        "action": action,
        "opts": ModelVersion._meta,
    }
    return TemplateResponse(request, "admin/hearth/confirm.html", context)


def version_files(version: ModelVersion) -> list[tuple[str, str, int]]:
    """(name, sha256, bytes) of each of the version's GGUF files still on disk."""
    folder = Path(version.path) if version.path else None
    if folder is None:
        return []
    found = []
    for name, sha in sorted(
        (
            {
                **version.manifest.get("gguf", {}),
                **{k: v for k, v in version.manifest.get("adapter_gguf", {}).items() if k.endswith(".gguf")},
            }
        ).items()
    ):
        path = folder / name
        if path.is_file():
            found.append((name, sha, path.stat().st_size))
    return found


def version_download_view(request, admin_site, pk: int, name: str):
    """Stream one GGUF file of a version (the view permission: _admin_urls checks it)."""
    version = get_object_or_404(ModelVersion, pk=pk)
    if name not in {n for n, _, _ in version_files(version)}:
        raise Http404(name)
    request_audit(request, action="model.download", target=f"version {pk}", detail=name)
    return FileResponse((Path(version.path) / name).open("rb"), as_attachment=True, filename=name)


def policies_view(request, admin_site):
    """Every admin policy in one form; a POST stores what changed (audited old → new) and adds an
    uploaded file to the blocked-code corpus. Changing needs the change permission on the policy."""
    from django.core.exceptions import PermissionDenied

    from inference.models import BlockedCode, ServingPolicy
    from webui.forms import PoliciesForm
    from webui.policies import blocked_code_upload, policies_current, policies_update

    can_change = request.user.has_perm("inference.change_servingpolicy")
    if request.method == "POST" and not can_change:
        raise PermissionDenied("Changing policies needs the “change serving policy” permission.")
    form = PoliciesForm(request.POST or None, request.FILES or None, initial=policies_current())
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        actor, ip = request.user.get_username(), request_client_ip(request)
        changes = policies_update(values=data, actor=actor, ip=ip)
        if data["blocked_code"]:
            name, text = data["blocked_code"]
            blocked_code_upload(name=name, text=text, actor=actor, ip=ip)
            changes.append(f"{name} added to the blocked-code corpus")
        messages.success(request, "Saved: " + "; ".join(changes) if changes else "Nothing changed.")
        return redirect(reverse("admin:inference_servingpolicy_policies"))
    context = {
        **admin_site.each_context(request),
        "title": "Policies",
        "form": form,
        "can_change": can_change,
        "blocked": BlockedCode.objects.order_by("-created_at")[:20],
        "blocked_count": BlockedCode.objects.count(),
        "opts": ServingPolicy._meta,
    }
    return TemplateResponse(request, "admin/hearth/policies.html", context)


def inbox_view(request, admin_site):
    """The signed-in admin's notifications, newest first, with their own read state."""
    from appliance.models import Notification
    from appliance.notifications import notifications_inbox

    notes = notifications_inbox(user=request.user)
    context = {
        **admin_site.each_context(request),
        "title": "Inbox",
        "notes": notes,
        "opts": Notification._meta,
    }
    return TemplateResponse(request, "admin/hearth/inbox.html", context)


@require_POST
def inbox_read_view(request, admin_site, pk: int):
    from appliance.models import Notification
    from appliance.notifications import notification_mark_read

    notification_mark_read(notification=get_object_or_404(Notification, pk=pk), user=request.user)
    return redirect(reverse("admin:appliance_notification_inbox"))


@require_POST
def inbox_read_all_view(request, admin_site):
    from appliance.notifications import notifications_mark_all_read

    count = notifications_mark_all_read(user=request.user)
    messages.info(request, f"{count} notification{'s' if count != 1 else ''} marked read.")
    return redirect(reverse("admin:appliance_notification_inbox"))
