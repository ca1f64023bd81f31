from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Run the engine process that holds the served GGUF (llama.cpp) and answers the web tier on loopback."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", default=settings.HEARTH_ENGINE_HOST, help="Bind address (default loopback)."
        )
        parser.add_argument(
            "--port", type=int, default=settings.HEARTH_ENGINE_PORT, help="Port to listen on."
        )
        parser.add_argument(
            "--ctx", type=int, default=settings.HEARTH_ENGINE_CTX, help="Context window in tokens."
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=settings.HEARTH_ENGINE_THREADS,
            help="CPU threads for llama.cpp (0: one per core of the engine's CPU set).",
        )
        parser.add_argument(
            "--slots",
            type=int,
            default=settings.HEARTH_ENGINE_SLOTS,
            help="Parallel slots: sequences decoded together in one batched llama.cpp context.",
        )
        parser.add_argument(
            "--kv-cache-mb",
            type=int,
            default=settings.HEARTH_ENGINE_KV_CACHE_MB,
            help="RAM for users' parked prompt caches when users outnumber slots (0 = off).",
        )
        parser.add_argument(
            "--poll",
            type=float,
            default=settings.HEARTH_ENGINE_POLL_S,
            help="Seconds between checks for a newly promoted model.",
        )

    def handle(self, *args, **opts):
        from inference.engine.server import serve

        if opts["slots"] < 1:
            raise CommandError("--slots must be at least 1.")
        self.stdout.write(f"Hearth engine on http://{opts['host']}:{opts['port']} (Ctrl-C to stop)")
        serve(
            host=opts["host"],
            port=opts["port"],
            n_ctx=opts["ctx"],
            n_threads=opts["threads"],
            slots=opts["slots"],
            poll_s=opts["poll"],
            kv_cache_mb=opts["kv_cache_mb"],
        )
