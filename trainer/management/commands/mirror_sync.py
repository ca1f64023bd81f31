from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Fetch new commits into Hearth's mirrors (one by name, or --all), and make sure the scheduled "
        "sync (HEARTH_MIRROR_SYNC_MINUTES) exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="Repository to sync.")
        parser.add_argument("--all", action="store_true", help="Sync every registered repository.")

    def handle(self, *args, **opts):
        from tqdm import tqdm

        from trainer.mirrors.services import mirror_schedule_ensure, repository_sync
        from trainer.models import Repository

        if opts["all"] == bool(opts["name"]):
            raise CommandError("Give a repository name or --all.")
        repos = list(
            Repository.objects.all() if opts["all"] else Repository.objects.filter(name=opts["name"])
        )
        if not repos:
            raise CommandError(
                f"No repository named {opts['name']!r}." if opts["name"] else "No repositories yet."
            )
        failed = 0
        for repo in tqdm(repos, desc="mirrors", unit="repo", file=self.stderr, disable=None):
            old = repo.head_sha
            try:
                repository_sync(repo=repo)
                change = "unchanged" if old == repo.head_sha else f"was {old[:12] or 'empty'}"
                self.stdout.write(f"{repo.name}: {repo.default_branch} at {repo.head_sha[:12]} ({change})")
            except HearthError as exc:
                failed += 1
                self.stderr.write(f"{repo.name}: {exc}")
        self.stdout.write(
            f"{len(repos) - failed} synced, {failed} failed; scheduled sync: {mirror_schedule_ensure()}"
        )
        if failed:
            raise CommandError(f"{failed} repositories failed to sync.")
