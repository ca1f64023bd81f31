"""Users' KV caches parked in RAM while their slot serves someone else.

With more developers than slots, a slot's KV cache keeps being overwritten by another user's
prompt, and every keystroke would re-evaluate the whole file. Before a slot switches user, the
leaving user's sequence state (llama.cpp `llama_state_seq_get_data`: the KV cells of the slot's
sequence, a few MB for a small model) is copied here; when that user comes back to any slot of the same
model, it is copied in again, and the prompt cache works as if they had never left. Entries are
evicted least-recently-used beyond a byte budget.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

logger = logging.getLogger(__name__)


class KvStore:
    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, list[int]]] = OrderedDict()
        self._bytes = 0
        self.stats = {"saved": 0, "restored": 0, "evicted": 0}

    def save(self, user: str, lane) -> None:
        """Park `lane`'s sequence (its prompt cache) under `user`."""
        if self.budget <= 0:
            return
        state = lane.state_get()
        if state is None or len(state[0]) > self.budget:
            return
        with self._lock:
            self._drop(user)
            self._entries[user] = state
            self._bytes += len(state[0])
            self.stats["saved"] += 1
            while self._bytes > self.budget and self._entries:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self.stats["evicted"] += 1

    def restore(self, user: str, lane) -> bool:
        """Load `user`'s parked sequence into `lane`; False when there is none (or it did not fit)."""
        with self._lock:
            entry = self._entries.get(user)
            if entry is None:
                return False
            self._entries.move_to_end(user)
        if not lane.state_set(*entry):
            return False
        with self._lock:
            self.stats["restored"] += 1
        return True

    def _drop(self, user: str) -> None:
        old = self._entries.pop(user, None)
        if old is not None:
            self._bytes -= len(old[0])
