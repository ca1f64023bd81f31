from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the engine process that holds the served GGUF (llama.cpp) and answers the web tier on loopback."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.HEARTH_ENGINE_HOST, help="Bind address (default loopback).")
        parser.add_argument("--port", type=int, default=settings.HEARTH_ENGINE_PORT, help="Port to listen on.")
        parser.add_argument("--ctx", type=int, default=settings.HEARTH_ENGINE_CTX, help="Context window in tokens.")
        parser.add_argument("--threads", type=int, default=settings.HEARTH_ENGINE_THREADS, help="CPU threads.")

    def handle(self, *args, **opts):
        from inference.engine.server import serve

        self.stdout.write(f"Hearth engine on http://{opts['host']}:{opts['port']} (Ctrl-C to stop)")
        serve(host=opts["host"], port=opts["port"], n_ctx=opts["ctx"], n_threads=opts["threads"])
