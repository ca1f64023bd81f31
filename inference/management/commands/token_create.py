from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create an API token for USER (created if new) and print it once; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("user", help="Username the token belongs to.")
        parser.add_argument("--name", default="", help="A label, e.g. the machine or IDE.")

    def handle(self, *args, **opts):
        from inference.auth import token_create

        if not opts["user"].strip():
            raise CommandError("USER must not be empty.")
        _, raw = token_create(username=opts["user"], name=opts["name"])
        self.stderr.write("Copy this token now; Hearth stores only its hash and cannot show it again:")
        self.stdout.write(raw)
