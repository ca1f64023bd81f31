import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

_DURATION = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def duration_parse(text: str) -> timedelta | None:
    """'30d', '12h', '90m' → a timedelta; 'never' or '0' → None (no expiry)."""
    if text.strip().lower() in ("never", "0", "0d"):
        return None
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise CommandError(f"--expires-in takes a duration like 30d, 12h or 90m, or 'never'; got {text!r}.")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = "Create an API token for USER (created if new) and print it once; only its hash is stored."

    def add_arguments(self, parser):
        from django.conf import settings

        days = settings.HEARTH_TOKEN_DEFAULT_DAYS
        parser.add_argument("user", help="Username the token belongs to.")
        parser.add_argument("--name", default="", help="A label, e.g. the machine or IDE.")
        parser.add_argument(
            "--expires-in",
            default=f"{days}d" if days else "never",
            help="When the token stops working: 30d, 12h, 90m or 'never' "
            "(default from HEARTH_TOKEN_DEFAULT_DAYS: %(default)s).",
        )

    def handle(self, *args, **opts):
        from django.utils import timezone

        from inference.auth import token_create

        if not opts["user"].strip():
            raise CommandError("USER must not be empty.")
        lifetime = duration_parse(opts["expires_in"])
        expires_at = timezone.now() + lifetime if lifetime else None
        token, raw = token_create(username=opts["user"], name=opts["name"], expires_at=expires_at)
        self.stderr.write(
            "Copy this token now; Hearth stores only its hash and cannot show it again"
            + (f" (it expires {token.expires_at:%Y-%m-%d %H:%M} UTC):" if expires_at else ":")
        )
        self.stdout.write(raw)
