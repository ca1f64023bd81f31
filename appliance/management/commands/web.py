"""`hearth web`: the web tier alone (Hearth's front and gunicorn), as the hearth-web systemd unit runs it."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Run the web tier (admin and completion API) on HEARTH_WEB_BIND until SIGTERM or Ctrl-C: Hearth's "
        "front reads each request whole (slow clients hold no gunicorn thread) and hands it to gunicorn "
        "on a private unix socket; HTTPS when HEARTH_TLS_CERT/HEARTH_TLS_KEY are set."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.HEARTH_WEB_PORT, help="Web port.")

    def handle(self, *args, **opts):
        from appliance.processes import web_serve

        try:
            web_serve(opts["port"])
        except (OSError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
