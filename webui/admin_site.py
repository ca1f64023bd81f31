"""The admin site in the order of an admin's job, in Hearth's words: the sidebar and the index list
code, training, models, serving, usage, audit and users in that order (the job queue's own pages stay
out of them, reachable by URL); lists are titled as the sidebar names them and a row's page by what
it is ("Dataset 12"), never "Select dataset to change"; "View site" opens the dashboard."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.urls import reverse_lazy
from django.utils.text import capfirst

# Each section of the navigation and its models, in the order an admin meets them.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Code", ("trainer.repository",)),
    ("Training", ("trainer.trainingrun", "trainer.dataset", "trainer.datasetfile")),
    ("Models", ("trainer.modelversion", "trainer.evaluationreport", "trainer.basemodel")),
    ("Serving", ("inference.apitoken", "inference.servingpolicy", "inference.blockedcode")),
    (
        "Usage",
        (
            "inference.completionrecord",
            "inference.completionevent",
            "inference.codesnapshot",
            "inference.filtercount",
            "inference.flowlog",
        ),
    ),
    ("Audit", ("appliance.auditentry", "appliance.notification")),
    ("Users", ("auth.user", "auth.group", "appliance.directoryaccount")),
)
ORDER = {label: i for i, label in enumerate(label for _, labels in SECTIONS for label in labels)}
# A list's name where the model's plural is not what an admin calls it.
NAMES = {
    "inference.servingpolicy": "Policies",
    "inference.blockedcode": "Blocked code",
    "appliance.auditentry": "Audit log",
}
# The job queue's internals (schedules, queued, successful and failed tasks): read-only pages a
# superuser may open by URL, not a place an admin needs to go.
HIDDEN_APPS = frozenset({"django_q"})
# Rows that are edited on a page of their own, never added from the stock form: no "Add" link.
NO_ADD_LINK = frozenset({"inference.servingpolicy"})


def list_name(model) -> str:
    """What the sidebar, the index and a list's title call `model`'s rows."""
    return NAMES.get(model._meta.label_lower, capfirst(model._meta.verbose_name_plural))


def app_list_in_job_order(site, request, app_label: str | None = None) -> list[dict]:
    """`AdminSite.get_app_list` in sections of the admin's job. For one app's own page (its
    breadcrumb), that app's models in the same order."""
    app_dict = site._build_app_dict(request, app_label)
    for app in app_dict.values():
        for entry in app["models"]:
            label = entry["model"]._meta.label_lower
            entry["name"] = list_name(entry["model"])
            if label in NO_ADD_LINK:
                entry["add_url"] = None

    def rank(entry: dict) -> tuple:
        return (ORDER.get(entry["model"]._meta.label_lower, len(ORDER)), entry["name"])

    if app_label:
        apps = list(app_dict.values())
        for app in apps:
            app["models"].sort(key=rank)
        return apps

    models = {
        entry["model"]._meta.label_lower: entry
        for label, app in app_dict.items()
        if label not in HIDDEN_APPS
        for entry in app["models"]
    }
    sections = []
    for title, labels in SECTIONS:
        entries = [models.pop(label) for label in labels if label in models]
        if entries:
            sections.append(_section(title, entries))
    if models:  # registered later and not placed yet: shown, never lost
        sections.append(_section("Other", sorted(models.values(), key=rank)))
    return sections


def _section(title: str, entries: list[dict]) -> dict:
    return {
        "name": title,
        "app_label": f"hearth-{title.lower()}",
        "app_url": "",  # a section is not an app: its caption is not a link
        "has_module_perms": True,
        "models": entries,
    }


def site_configure(site) -> None:
    """Hearth's navigation and titles on the admin site."""
    site.site_header = "Hearth"
    site.site_title = "Hearth admin"
    site.index_title = "Private code completion"
    site.site_url = reverse_lazy("admin:index")  # "View site": the dashboard (the API has no page)

    def get_app_list(request, app_label=None):
        return app_list_in_job_order(site, request, app_label)

    site.get_app_list = get_app_list


class HearthTitlesMixin:
    """A list titled as the sidebar names it ("Repositories"), a row's page by what it is and its
    number or name ("Dataset 12", "Repository payments"), instead of Django's "Select repository to
    change" and "Change dataset"."""

    def object_title(self, obj) -> str:
        return f"{capfirst(self.model._meta.verbose_name)} {obj.pk}"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": list_name(self.model), **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra = {"title": self.object_title(obj), "subtitle": None} if obj is not None else {}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})


class ShownNotSavedMixin(HearthTitlesMixin):
    """A row made by a service (an import, a build, a run, the pipeline) and changed only through its
    actions: its page shows it, with no Save and no Delete button (a list action deletes, where the
    admin may), and there is no add form."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return super().change_view(
            request, object_id, form_url, {"show_delete": False, **(extra_context or {})}
        )


def register_replacing(model, admin_class, site=admin.site) -> None:
    """Register `admin_class` for `model`, replacing an admin another app registered."""
    if site.is_registered(model):
        site.unregister(model)
    site.register(model, admin_class)
