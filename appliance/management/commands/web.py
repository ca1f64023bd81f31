"""`hearth web`: the web tier alone (gunicorn), as the hearth-web systemd unit runs it."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run the web tier (gunicorn: admin and completion API) on HEARTH_WEB_BIND, with TLS when "
        "HEARTH_TLS_CERT/HEARTH_TLS_KEY are set. Replaces this process (for systemd)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.HEARTH_WEB_PORT, help="Web port.")

    def handle(self, *args, **opts):
        from appliance.processes import gunicorn_command

        cmd = gunicorn_command(opts["port"])
        os.execv(cmd[0], cmd)
