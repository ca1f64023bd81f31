"""The canary: a candidate served to a share of developers beside the served model, and the live
comparison that says whether they accept its suggestions more.

Who is in the share is decided per user (a hash of the user and the canary's version), so each
developer keeps one model (and their prompt cache) for the whole canary, and raising the share
only adds users. Acceptance comes from the clients that report it (Tabby's view / select events, or
a snapshot posted to Hearth's own endpoint after an accept); the comparison is a two-proportion
test over the completions shown since the canary started.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

Z95 = 1.959964


def canary_bucket(user_id: int, version_pk: int) -> int:
    """The user's place, 0–99, in the queue for version `version_pk`'s canary."""
    digest = hashlib.sha256(f"hearth-canary:{version_pk}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def in_canary(user_id: int, version_pk: int, percent: int) -> bool:
    return canary_bucket(user_id, version_pk) < percent


def wilson_interval(accepted: int, shown: int) -> tuple[float, float] | None:
    """95% Wilson score interval of an acceptance rate (None when nothing was shown)."""
    if shown <= 0:
        return None
    p, n, z2 = accepted / shown, shown, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Comparison:
    """The canary's acceptance against the served model's, over the same period."""

    canary_accepted: int
    canary_shown: int
    served_accepted: int
    served_shown: int
    difference: float | None  # canary rate − served rate
    interval: tuple[float, float] | None  # 95% interval of the difference
    p_value: float | None
    verdict: str  # better | worse | unknown | no-events

    @property
    def sentence(self) -> str:
        if self.verdict == "no-events":
            return (
                "Not known: no acceptance was reported for either model yet. Only clients that report "
                "acceptance (Tabby's extensions, or a client posting snapshots to Hearth) can answer this."
            )
        diff = f"{self.difference:+.1%}" if self.difference is not None else "–"
        low, high = self.interval or (0.0, 0.0)
        rates = (
            f"canary {self.canary_accepted:,} of {self.canary_shown:,} shown accepted, served model "
            f"{self.served_accepted:,} of {self.served_shown:,}; difference {diff} (95% interval "
            f"{low:+.1%} to {high:+.1%})"
        )
        if self.verdict == "better":
            return f"Better: developers accept the canary's suggestions significantly more ({rates})."
        if self.verdict == "worse":
            return f"Worse: developers accept the canary's suggestions significantly less ({rates})."
        return f"Not known yet: the difference is not significant ({rates})."


def acceptance_compare(
    canary: tuple[int, int], served: tuple[int, int], *, alpha: float = 0.05
) -> Comparison:
    """Two-proportion z-test of (accepted, shown) for the canary against the served model."""
    (ca, cs), (sa, ss) = canary, served
    if cs == 0 or ss == 0:
        verdict = "no-events" if cs == 0 and ss == 0 else "unknown"
        return Comparison(ca, cs, sa, ss, None, None, None, verdict)
    pc, ps = ca / cs, sa / ss
    diff = pc - ps
    # Newcombe's interval for a difference of proportions (from the two Wilson intervals): it stays
    # within −100%…+100% and holds for small counts, where the plain normal interval does not.
    (lc, uc), (ls, us) = wilson_interval(ca, cs), wilson_interval(sa, ss)
    interval = (
        diff - math.sqrt((pc - lc) ** 2 + (us - ps) ** 2),
        diff + math.sqrt((uc - pc) ** 2 + (ps - ls) ** 2),
    )
    pooled = (ca + sa) / (cs + ss)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / cs + 1 / ss))
    if se0 == 0:
        p_value = 1.0
    else:
        p_value = math.erfc(abs(diff) / se0 / math.sqrt(2))
    verdict = "unknown"
    if p_value < alpha:
        verdict = "better" if diff > 0 else "worse"
    return Comparison(ca, cs, sa, ss, diff, interval, p_value, verdict)


def canary_comparison(version) -> tuple[dict[str, dict], Comparison]:
    """The canary `version`'s figures and the served model's since the canary started, and the test."""
    from inference.selectors import arm_figures

    figures = arm_figures(since=version.canary_started_at or version.created_at)
    c, s = figures["canary"], figures["served"]
    return figures, acceptance_compare((c["accepted"], c["viewed"]), (s["accepted"], s["viewed"]))


def canary_check() -> str:
    """Notify the admins once the running canary's comparison becomes significant (either way)."""
    from appliance.notifications import notify
    from trainer.models import ModelVersion
    from trainer.versions import canary_version

    version = canary_version()
    if version is None:
        return "no canary"
    _, comparison = canary_comparison(version)
    if comparison.verdict not in {"better", "worse"} or version.canary_verdict == comparison.verdict:
        return comparison.verdict
    updated = (
        ModelVersion.objects.filter(pk=version.pk, canary_percent__gt=0)
        .exclude(canary_verdict=comparison.verdict)
        .update(canary_verdict=comparison.verdict)
    )
    if updated:
        notify(
            title=f"Canary version {version.pk}: developers accept its suggestions "
            + ("more" if comparison.verdict == "better" else "less"),
            body=comparison.sentence + " Promote it to everyone or roll it back on its page.",
            level="success" if comparison.verdict == "better" else "error",
        )
    return comparison.verdict
