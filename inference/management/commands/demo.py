"""`make demo`: a real repository → dataset → fine-tune (through qcluster) → evaluation → GGUF →
served completions through the OpenAI client. Ends with one JSON line."""

from __future__ import annotations

import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = "Run Hearth end to end on a git repository with the embedded default base model."

    def add_arguments(self, parser):
        parser.add_argument("--repo", default=str(settings.BASE_DIR), help="Git repository to learn from.")
        parser.add_argument(
            "--base",
            default=settings.HEARTH_BASE_MODEL,
            help="Base model slug (default: SmolLM2-135M-Instruct; hearth-micro trains in seconds).",
        )
        parser.add_argument(
            "--max-steps",
            type=int,
            default=90,
            help="Cap on optimizer steps (the whole demo: ~45 min on 2 cores).",
        )
        parser.add_argument(
            "--preset", default="thorough", help="quick, standard or thorough (passes over the data)."
        )
        parser.add_argument(
            "--method",
            default="lora",
            choices=("auto", "full", "lora", "qlora"),
            help="Training method. The demo trains LoRA: on 2 CPU cores it finished 90 steps in 13 min where a "
            "full fine-tune (what auto picks here, and what a GPU host should use) took 23, with no less exact "
            "match (docs/training.md).",
        )
        parser.add_argument(
            "--serve", action="store_true", help="Keep the engine and web server running at the end."
        )
        parser.add_argument("--port", type=int, default=settings.HEARTH_WEB_PORT, help="Web port.")

    def handle(self, *args, **opts):
        from appliance.processes import Services, sigterm_as_interrupt
        from inference.demo import demo_report_lines, demo_run
        from trainer.training.config import LoraSettings

        t0, services = time.monotonic(), Services()
        sigterm_as_interrupt()
        say = lambda msg: self.stdout.write(f"[{time.monotonic() - t0:7.1f}s] {msg}")
        try:
            lora = LoraSettings(preset=opts["preset"], max_steps=opts["max_steps"], method=opts["method"])
            result = demo_run(
                source=opts["repo"],
                base_slug=opts["base"],
                settings_=lora,
                port=opts["port"],
                services=services,
                log=say,
            )
            self.stdout.write(self.style.SUCCESS("\nHearth demo finished"))
            self.stdout.write("\n".join(demo_report_lines(result)))
            if opts["serve"]:
                self.stdout.write("Serving until Ctrl-C.")
                services.wait_forever()
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            services.stop()
        self.stdout.write(json.dumps(result.summary()))
