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
        parser.add_argument("user", help="Username the token belongs to.")
        parser.add_argument("--name", default="", help="A label, e.g. the machine or IDE.")
        expiry = parser.add_mutually_exclusive_group()
        expiry.add_argument(
            "--days",
            type=int,
            help="Days until the token stops working; 0: never (default: HEARTH_TOKEN_DAYS, 90 unless set).",
        )
        expiry.add_argument(
            "--expires-in",
            help="When the token stops working, as a duration: 30d, 12h, 90m or 'never'.",
        )

    def handle(self, *args, **opts):
        from django.utils import timezone

        from inference.auth import token_create

        if not opts["user"].strip():
            raise CommandError("USER must not be empty.")
        if opts["days"] is not None and opts["days"] < 0:
            raise CommandError(f"--days takes a number of days, or 0 for never; got {opts['days']}.")
        expiry = {"days": opts["days"]}
        if opts["expires_in"] is not None:
            lifetime = duration_parse(opts["expires_in"])
            expiry = {"expires_at": timezone.now() + lifetime} if lifetime else {"days": 0}
        token, raw = token_create(username=opts["user"], name=opts["name"], **expiry)
        self.stderr.write(
            "Copy this token now; Hearth stores only its hash and cannot show it again"
            + (f" (it expires {token.expires_at:%Y-%m-%d %H:%M} UTC):" if token.expires_at else ":")
        )
        self.stdout.write(raw)
