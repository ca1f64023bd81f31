"""`make serve`: run the job worker, the engine and the web server until Ctrl-C or SIGTERM."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run Hearth's services (qcluster job worker, llama.cpp engine, web tier: Hearth's front and gunicorn) "
        "until Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--port",
            type=int,
            default=settings.HEARTH_WEB_PORT,
            help="Web port (on HEARTH_WEB_BIND, default loopback).",
        )
        parser.add_argument("--no-worker", action="store_true", help="Do not start the job worker.")

    def handle(self, *args, **opts):
        from appliance.processes import (
            Services,
            engine_wait,
            log_path,
            sigterm_as_interrupt,
            wait_http,
            web_url,
        )

        services = Services()
        sigterm_as_interrupt()
        try:
            if not opts["no_worker"]:
                services.start_qcluster()
            services.start_engine()
            services.start_web(opts["port"])
            health = engine_wait(timeout=120, accept=lambda h: h.get("status") == "ok", services=services)
            web = web_url(opts["port"])
            wait_http(f"{web}/ready", timeout=60, services=services)
            self.stdout.write(self.style.SUCCESS(f"Hearth is serving {health['model']}"))
            self.stdout.write(f"  bound to            {settings.HEARTH_WEB_BIND}:{opts['port']}")
            self.stdout.write(f"  OpenAI completions  {web}/v1  (token: manage.py token_create USER)")
            self.stdout.write(f"  admin               {web}/admin/")
            self.stdout.write(f"  logs                {log_path('engine').parent}")
            self.stdout.flush()  # a log file or the journal sees it now, not at exit
            while True:
                services.check_alive()
                time.sleep(2)
        except KeyboardInterrupt:
            self.stdout.write("stopping")
        finally:
            services.stop()
