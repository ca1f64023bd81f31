import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone


class Command(BaseCommand):
    help = (
        "Print usage figures (requests, acceptance rate, latency percentiles) by language and model as JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=7, help="How many days back to look (default 7).")

    def handle(self, *args, **opts):
        from inference.selectors import usage_summary

        if opts["days"] < 1:
            raise CommandError("--days must be at least 1.")
        now = timezone.now()
        self.stdout.write(
            json.dumps(usage_summary(since=now - timedelta(days=opts["days"]), until=now), indent=2)
        )
