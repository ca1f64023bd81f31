import sys

from django.core.management.base import BaseCommand, CommandError

from appliance.errors import HearthError


class Command(BaseCommand):
    help = (
        "Register a git repository (local path or intranet URL) and mirror it under the instance dir. "
        "Credentials are read from stdin or a file, never from the command line, and stored encrypted."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "source", help="Path to a git repository (bare or not) or an https/ssh/git/file URL."
        )
        parser.add_argument(
            "--name", default="", help="Name of the repository in Hearth (default: from the source)."
        )
        parser.add_argument(
            "--branch",
            default="",
            help="Branch to read (default: the repository's default branch, detected at each sync).",
        )
        parser.add_argument("--username", default="", help="User name for an https URL.")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the password or access token for an https URL from stdin.",
        )
        parser.add_argument(
            "--ssh-key",
            type=open,
            metavar="FILE",
            help="Private key for an ssh:// URL (stored encrypted; the host must be in known_hosts).",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="PATTERN",
            help="Leave matching files out of datasets (gitignore syntax); repeatable.",
        )

    def handle(self, *args, **opts):
        from trainer.mirrors.services import mirror_schedule_ensure, repository_register

        credential = ""
        if opts["password_stdin"]:
            credential = sys.stdin.readline().rstrip("\n")
            if not credential:
                raise CommandError("--password-stdin was given but stdin was empty.")
        elif opts["ssh_key"]:
            with opts["ssh_key"] as f:
                credential = f.read()
        try:
            repo = repository_register(
                source=opts["source"],
                name=opts["name"],
                branch=opts["branch"],
                username=opts["username"],
                credential=credential,
                exclude_globs="\n".join(opts["exclude"]),
            )
        except HearthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(f"Mirrored {repo.name}: {repo.default_branch} at {repo.head_sha[:12]}")
        )
        self.stdout.write(
            f"  source: {repo.source}{'  (credential stored encrypted)' if repo.credential else ''}"
        )
        self.stdout.write(f"  mirror: {repo.mirror_path}")
        self.stdout.write(f"  scheduled sync: {mirror_schedule_ensure()}")
