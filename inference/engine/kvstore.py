"""Users' KV caches parked in RAM while their slot serves someone else.

With more developers than slots, a slot's KV cache keeps being overwritten by another user's
prompt, and every keystroke would re-evaluate the whole file. Before a slot switches user, the
leaving user's sequence state (llama.cpp `llama_state_seq_get_data`: the KV cells of sequence 0,
a few MB for a small model) is copied here; when that user comes back to any slot of the same
model, it is copied in again, and the prompt cache works as if they had never left. Entries are
evicted least-recently-used beyond a byte budget.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import OrderedDict

import numpy as np

logger = logging.getLogger(__name__)


class KvStore:
    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self.stats = {"saved": 0, "restored": 0, "evicted": 0}

    def save(self, user: str, llm) -> None:
        """Park `llm`'s current sequence (its prompt cache) under `user`."""
        import llama_cpp

        n = int(llm.n_tokens)
        if n == 0 or self.budget <= 0:
            return
        ctx = llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        if size > self.budget:
            return
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        if not written:
            return
        entry = (bytes(memoryview(buf)[:written]), np.array(llm.input_ids[:n], copy=True))
        with self._lock:
            self._drop(user)
            self._entries[user] = entry
            self._bytes += len(entry[0])
            self.stats["saved"] += 1
            while self._bytes > self.budget and self._entries:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self.stats["evicted"] += 1

    def restore(self, user: str, llm) -> bool:
        """Load `user`'s parked sequence into `llm`; False when there is none (or it did not fit)."""
        import llama_cpp

        with self._lock:
            entry = self._entries.get(user)
            if entry is None:
                return False
            self._entries.move_to_end(user)
        data, ids = entry
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        src = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, src, len(data), 0):
            llm.n_tokens = 0
            return False
        llm.input_ids[: len(ids)] = ids
        llm.n_tokens = len(ids)
        llm._requires_eval = True  # logits are not part of the parked state
        with self._lock:
            self.stats["restored"] += 1
        return True

    def _drop(self, user: str) -> None:
        old = self._entries.pop(user, None)
        if old is not None:
            self._bytes -= len(old[0])
