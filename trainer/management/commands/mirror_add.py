from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = "Register a git repository (local path or intranet URL) and mirror it under the instance dir."

    def add_arguments(self, parser):
        parser.add_argument("source", help="Path to a git repository (bare or not) or an https/ssh/git/file URL.")
        parser.add_argument("--name", default="", help="Name of the repository in Hearth (default: from the source).")
        parser.add_argument("--branch", default="", help="Branch to read (default: the repository's HEAD branch).")

    def handle(self, *args, **opts):
        from trainer.mirrors.services import repository_register

        try:
            repo = repository_register(source=opts["source"], name=opts["name"], branch=opts["branch"])
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Mirrored {repo.name}: {repo.default_branch} at {repo.head_sha[:12]}"))
