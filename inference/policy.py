"""The serving rules in force (admin policy + blocked-code index + the served version's repository
context), cached briefly per process.

Every API request needs them; reading them at most every HEARTH_POLICY_CACHE_S seconds keeps the
request path free of extra queries while an admin's change still applies within seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from inference.context import NO_CONTEXT, ServedContext, served_context_lookup, version_context
from inference.filters import VerbatimIndex, verbatim_index
from inference.models import ServingPolicy


@dataclass(frozen=True)
class ServingRules:
    policy: ServingPolicy
    globs: list[str]
    index: VerbatimIndex
    filters: frozenset[str]  # the response filters in force
    served: ServedContext = NO_CONTEXT  # looked up only while the repository-context switch is on
    # The candidate tried on a share of developers (its context looked up like the served one's).
    canary: ServedContext | None = None
    canary_percent: int = 0

    def arm_for(self, user_id: int | None) -> str:
        """ "canary" for a user in the running canary's share, else "served" (see inference.canary)."""
        from inference.canary import in_canary

        if self.canary is None or user_id is None:
            return "served"
        return "canary" if in_canary(user_id, self.canary.version_pk, self.canary_percent) else "served"

    def context_for(self, arm: str) -> ServedContext:
        return self.canary if arm == "canary" and self.canary is not None else self.served


_lock = threading.Lock()
_cached: tuple[float, ServingRules] | None = None


def policy_get() -> ServingPolicy:
    policy, _ = ServingPolicy.objects.get_or_create(pk=1)
    return policy


def serving_rules() -> ServingRules:
    global _cached
    now = time.monotonic()
    with _lock:
        if _cached is not None and now - _cached[0] < settings.HEARTH_POLICY_CACHE_S:
            return _cached[1]
    from trainer.versions import canary_version

    policy = policy_get()
    canary = canary_version()
    rules = ServingRules(
        policy=policy,
        globs=policy.globs,
        index=verbatim_index(),
        filters=frozenset(policy.response_filters or ()),
        served=served_context_lookup() if policy.repository_context else NO_CONTEXT,
        canary=None
        if canary is None
        else (version_context(canary) if policy.repository_context else ServedContext(canary.pk)),
        canary_percent=canary.canary_percent if canary is not None else 0,
    )
    with _lock:
        _cached = (now, rules)
    return rules


def serving_rules_clear() -> None:
    """Forget the cached rules (after an admin edit in this process, and in tests)."""
    global _cached
    with _lock:
        _cached = None
