"""Bookkeeping writes (token usage, telemetry rows) off the request path.

A commit on SQLite costs an fsync, ~10 ms here: more than the rest of Hearth's overhead on a
completion together. Writes that the answer does not depend on are queued and committed by one
background thread per process in batches (one transaction every few tens of milliseconds).
With HEARTH_DEFERRED_WRITES off (unit tests) they run inline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, transaction

logger = logging.getLogger(__name__)

BATCH_WAIT_S = 0.02


class DeferredWriter:
    def __init__(self):
        self._cond = threading.Condition()
        self._queue: list[Callable[[], None]] = []
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, write: Callable[[], None]) -> None:
        if not settings.HEARTH_DEFERRED_WRITES:
            write()
            return
        with self._cond:
            self._queue.append(write)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True, name="deferred-writes")
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    return False
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
            time.sleep(BATCH_WAIT_S)  # let a burst of requests share one commit
            with self._cond:
                batch, self._queue, self._busy = self._queue, [], True
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
                    self._busy = False
                    self._cond.notify_all()


writer = DeferredWriter()


def deferred(write: Callable[[], None]) -> None:
    writer.submit(write)


def deferred_flush(timeout: float = 10.0) -> bool:
    return writer.flush(timeout)
