"""A promotion rolls through the engine replicas one at a time.

Every replica polls the database and loads a newly promoted model beside the old one. Loading takes
its host's disk, memory bandwidth and cores for a while, so replicas take turns: before it loads, a
replica takes the one `EngineSwapTurn`; the others keep serving the old model and ask again at their
next poll. The turn is held for `TURN_S` seconds and renewed while the load runs, so a replica that
dies mid-load holds up the others for at most that long. A first load (a replica that serves
nothing yet) takes no turn: it takes no capacity away from anyone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, connection
from django.db.models import Q
from django.utils import timezone

from inference.models import EngineSwapTurn

logger = logging.getLogger(__name__)

TURN_S = 60.0


def swap_turn_take(holder: str, *, turn_s: float = TURN_S) -> bool:
    """Take (or renew) the turn for `holder`: True when it is theirs for the next `turn_s` seconds."""
    now = timezone.now()
    try:
        EngineSwapTurn.objects.get_or_create(pk=1)
    except IntegrityError:  # another replica created the row at the same moment
        pass
    free = Q(holder="") | Q(holder=holder) | Q(expires_at__lt=now)
    taken = EngineSwapTurn.objects.filter(free, pk=1).update(
        holder=holder, expires_at=now + timedelta(seconds=turn_s)
    )
    return taken == 1


def swap_turn_give(holder: str) -> None:
    """Give the turn back (a no-op when `holder` no longer has it)."""
    EngineSwapTurn.objects.filter(pk=1, holder=holder).update(holder="", expires_at=timezone.now())


def swap_turn_holder() -> str:
    """Who is swapping now ("" when nobody is, or their turn ran out)."""
    row = EngineSwapTurn.objects.filter(pk=1, expires_at__gte=timezone.now()).exclude(holder="").first()
    return row.holder if row else ""


@contextmanager
def swap_turn(holder: str, *, turn_s: float = TURN_S) -> Iterator[bool]:
    """Yields whether `holder` got the turn; while inside, a thread renews it every third of `turn_s`."""
    if not swap_turn_take(holder, turn_s=turn_s):
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        try:
            while not done.wait(turn_s / 3):
                if not swap_turn_take(holder, turn_s=turn_s):
                    logger.warning("%s lost its swap turn mid-load", holder)
        except Exception:  # the load goes on; the turn then runs out on its own
            logger.exception("could not renew the swap turn of %s", holder)
        finally:
            connection.close()  # this thread's own database connection

    renewer = threading.Thread(target=renew, daemon=True, name="swap-turn")
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        swap_turn_give(holder)
