"""Bookkeeping writes (token usage, telemetry rows) off the request path.

A commit on SQLite costs an fsync, ~10 ms here: more than the rest of Hearth's overhead on a
completion together. Writes that the answer does not depend on are queued and committed by one
background thread per process in batches (one transaction every few tens of milliseconds). A write
may also wait a while (`delay_s`) so that one write covers many requests: a token's usage count is
written every HEARTH_USAGE_FLUSH_S seconds, not once a keystroke (that write was a third of the web
tier's CPU a completion). With HEARTH_DEFERRED_WRITES off (unit tests) they run inline.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, transaction

logger = logging.getLogger(__name__)

BATCH_WAIT_S = 0.02
EXIT_FLUSH_S = 5.0
WAIT_MAX_S = 3600.0


class DeferredWriter:
    def __init__(self):
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []  # a heap of (due, order, write)
        self._order = itertools.count()
        self._busy = False
        self._hurry = 0  # flushes waiting: every queued write is due now
        self._thread: threading.Thread | None = None
        self.written = 0  # writes run so far (each in a batch's transaction)

    def submit(self, write: Callable[[], None], *, delay_s: float = 0.0) -> None:
        if not settings.HEARTH_DEFERRED_WRITES:
            write()
            return
        now = time.monotonic()
        # A delayed write is due at the next multiple of its delay, so the writes of every request in
        # that time (all users' usage counts) share one batch and one commit.
        due = (now // delay_s + 1) * delay_s if delay_s > 0 else now
        with self._cond:
            heapq.heappush(self._queue, (due, next(self._order), write))
            if self._thread is None or not self._thread.is_alive():
                if self._thread is None:  # a process that exits (a web worker stopped) writes what waits
                    atexit.register(self.flush, EXIT_FLUSH_S)
                self._thread = threading.Thread(target=self._loop, daemon=True, name="deferred-writes")
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is committed, delayed writes too (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                while self._queue or self._busy:
                    if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                        return False
            finally:
                self._hurry -= 1
        return True

    def _due(self) -> bool:
        return bool(self._queue) and (self._hurry > 0 or self._queue[0][0] <= time.monotonic())

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    # At most WAIT_MAX_S at a time: a huge HEARTH_USAGE_FLUSH_S is a long wait, not
                    # an OverflowError that ends this thread and every write after it.
                    self._cond.wait(
                        timeout=min(WAIT_MAX_S, max(0.0, self._queue[0][0] - time.monotonic()))
                        if self._queue
                        else None
                    )
            time.sleep(BATCH_WAIT_S)  # let a burst of requests share one commit
            with self._cond:
                batch = []
                while self._due():
                    batch.append(heapq.heappop(self._queue)[2])
                self._busy = True
            try:
                close_old_connections()
                with transaction.atomic():
                    for write in batch:
                        try:
                            with transaction.atomic():  # a failing write rolls back alone
                                write()
                        except Exception:
                            logger.exception("deferred write failed")
            except Exception:
                logger.exception("deferred batch of %d writes failed", len(batch))
            finally:
                with self._cond:
                    self.written += len(batch)
                    self._busy = False
                    self._cond.notify_all()


writer = DeferredWriter()


def deferred(write: Callable[[], None], *, delay_s: float = 0.0) -> None:
    writer.submit(write, delay_s=delay_s)


def deferred_flush(timeout: float = 10.0) -> bool:
    return writer.flush(timeout)
