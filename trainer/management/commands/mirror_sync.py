from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = "Fetch new commits into Hearth's mirrors."

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="Repository to sync.")
        parser.add_argument("--all", action="store_true", help="Sync every registered repository.")

    def handle(self, *args, **opts):
        from trainer.mirrors.services import repository_sync
        from trainer.models import Repository

        if opts["all"] == bool(opts["name"]):
            raise CommandError("Give a repository name or --all.")
        repos = Repository.objects.all() if opts["all"] else Repository.objects.filter(name=opts["name"])
        if not repos:
            raise CommandError(f"No repository named {opts['name']!r}.")
        failed = 0
        for repo in repos:
            try:
                repository_sync(repo=repo)
                self.stdout.write(f"{repo.name}: {repo.default_branch} at {repo.head_sha[:12]}")
            except HearthError as exc:
                failed += 1
                self.stderr.write(f"{repo.name}: {exc}")
        if failed:
            raise CommandError(f"{failed} repositories failed to sync.")
