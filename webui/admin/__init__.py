"""Hearth's admin, by area: importing this package (Django's admin autodiscovery does) registers every
page. `base` sets up the site and holds what the areas share; `training` and `versions` are the
pipeline's rows, `serving` the completion API's, `appliance` the inbox, audit log, job queue and users."""

from webui.admin import appliance, base, serving, training, versions  # noqa: F401 (registration)
