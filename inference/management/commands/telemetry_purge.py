from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Delete telemetry, events, snapshots and flow logs older than the policy's retention (runs daily anyway)."

    def handle(self, *args, **opts):
        from inference.telemetry import telemetry_purge

        for name, count in telemetry_purge().items():
            self.stdout.write(f"{name}: {count} deleted")
