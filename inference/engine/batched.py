"""Continuous batching: every active request's next token in one llama.cpp decode call.

The served GGUF gets one llama.cpp context holding N sequences in a unified KV cache. Each
sequence is a slot (a `Lane`): the scheduler gives it one job at a time, and a user keeps coming
back to the sequence holding their prompt, so a keystroke evaluates only the tokens after the
longest common prefix. One thread steps all lanes together: each step puts the next token of every
generating lane, plus a slice of any newly admitted prompt, into one `llama_decode`. A new request
starts at the next step instead of waiting for the others to finish, and on a small CPU model a
batch of 8 tokens cost 3-5 times one token here (SmolLM2-135M, 2 cores), not 8 times.

Prompt building, token healing, stop handling and the rest of a completion's rules are the
`Generation` of `appliance.llm.sampling`, shared with the sequential path.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time

import numpy as np

from appliance.errors import EngineError
from appliance.llm.prompt import Completer
from appliance.llm.runtime import llama_open
from appliance.llm.sampling import CompletionResult, Generation, SamplingOptions, common_prefix

logger = logging.getLogger(__name__)

# Tokens of newly admitted prompts evaluated per step while other lanes are generating: a long cold
# prompt is spread over several steps so that it delays their next tokens a bounded amount each time.
PROMPT_CHUNK = 64
N_BATCH = 512
# A lane idle this long is parked: its KV cells are copied to RAM and freed, and copied back when its
# user returns. In the unified cache every token attends over the span up to the highest occupied
# cell, so other users' idle prompts made a lone typist's tokens dearer: SmolLM2 Q4_1, 2 cores, with 8
# idle prompts of ~350 tokens beside it, the span was ~2,900 cells instead of ~350. A developer who is
# typing comes back well within it and never pays the copy (332 tokens: 7.7 MB, 10 ms out, 3 ms back).
PARK_IDLE_S = 0.5


class _Task:
    def __init__(self, lane: Lane, gen: Generation):
        self.lane, self.gen = lane, gen
        self.pending: list[int] = []  # prompt tokens still to evaluate
        self.next: int | None = None  # sampled, to be evaluated in the next step
        self.done = threading.Event()
        self.error: Exception | None = None


class Lane:
    """One sequence of a `BatchedModel`: what the scheduler calls a slot."""

    def __init__(self, model: BatchedModel, seq: int):
        self.model, self.seq = model, seq
        self.tokens: list[int] = []  # what this sequence's KV cells hold, position by position
        # While parked, its cells live here instead (a llama.cpp sequence state and its size).
        self.parked: tuple[ctypes.Array, int] | None = None
        self.idle_since = time.monotonic()

    @property
    def can_infill(self) -> bool:
        return self.model.completer.can_infill

    @property
    def n_ctx(self) -> int:
        return self.model.n_ctx_seq

    def complete(
        self,
        prefix: str,
        suffix: str | None = None,
        options: SamplingOptions | None = None,
        *,
        context: list[tuple[str, str]] | None = None,
        filepath: str = "",
        on_token=None,
        cancel=None,
    ) -> CompletionResult:
        """Like `Completer.complete`, decoded in the shared batch; blocks until it is done."""
        if cancel is not None and cancel.is_set():
            return CompletionResult("", "cancelled", 0, 0, 0)
        gen = self.model.completer.prepare(
            prefix,
            suffix,
            n_ctx=self.n_ctx,
            options=options or SamplingOptions(),
            context=context,
            filepath=filepath,
            on_token=on_token,
            cancel=cancel,
        )
        return self.model.run(self, gen)

    def clear(self) -> None:
        """Empty this sequence's KV cells (its prompt cache), e.g. before it serves another user."""
        self.model._forget(self)

    def state_get(self) -> tuple[bytes, list[int]] | None:
        """This sequence's KV cells (a prompt cache to park), or None when it holds nothing."""
        with self.model.lock:
            if not self.tokens:
                return None
            state = self.parked or self._copy_out()
            return (bytes(memoryview(state[0])[: state[1]]), list(self.tokens)) if state else None

    def state_set(self, data: bytes, tokens: list[int]) -> bool:
        """Replace this sequence's KV cells with parked ones; False (and empty) if they do not fit."""
        with self.model.lock:
            self.parked = None
            if not self._copy_in((ctypes.c_uint8 * len(data)).from_buffer_copy(data), len(data)):
                return False
            self.tokens = list(tokens)
            return True

    def _copy_out(self, size: int | None = None) -> tuple[ctypes.Array, int] | None:
        """A copy of this sequence's cells (llama.cpp sequence state) and its length; the lock held."""
        import llama_cpp

        ctx = self.model.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, self.seq) if size is None else size
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, self.seq)
        return (buf, written) if written else None

    def _copy_in(self, buf: ctypes.Array, length: int) -> bool:
        """Replace this sequence's cells with a copy; False (and empty) if they do not fit. Lock held."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.model.mem, self.seq, -1, -1)
        if llama_cpp.llama_state_seq_set_data(self.model.ctx, buf, length, self.seq):
            return True
        llama_cpp.llama_memory_seq_rm(self.model.mem, self.seq, -1, -1)
        self.tokens = []
        return False


class BatchedModel:
    """The served GGUF in one llama.cpp context of `seqs` sequences, stepped by one thread."""

    def __init__(
        self,
        gguf_path: str,
        fim,
        *,
        seqs: int,
        n_ctx: int,
        n_threads: int,
        park_idle_s: float | None = PARK_IDLE_S,
        park_bytes: int = 512 << 20,
    ):
        """`park_idle_s`: park a lane idle this many seconds while others decode (None: never), as
        long as all parked lanes take at most `park_bytes` of RAM."""
        import llama_cpp

        # The Llama object loads the weights and the tokenizer; decoding uses a context of our own
        # on the same weights, so its own context only needs to be tiny.
        self.llm = llama_open(gguf_path, n_ctx=64, n_batch=64, n_threads=n_threads, seed=0)
        self.completer = Completer(self.llm, fim)
        self.n_ctx_seq = n_ctx
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = seqs * n_ctx
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = seqs
        params.n_threads = params.n_threads_batch = n_threads
        # One KV cache for all sequences. A stream per sequence makes a lone request cheaper when others
        # hold cached prompts (9 ms a token instead of 16 with 8 x 400 cells, SmolLM2 Q4_1), but llama.cpp
        # then splits a step whose lanes bring unequal token counts into several: 8 typing clients
        # measured p95 1.23-1.28 s that way against 0.78-1.10 s unified (make bench-serving).
        params.kv_unified = True
        # Flash attention skips the cells of other sequences that the unified cache masks out: without it
        # every token attends over all 8 users' prompts. SmolLM2 Q8_0, 8 lanes x 370 cached tokens, one
        # token each: 50 ms a step without, 32 ms with; a lone token among them 14 ms without, 8 ms with.
        # The sequential path (`llama_open`) uses it too, so greedy answers match.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.llm._model.model, params)
        if not self.ctx:
            self.llm.close()
            raise EngineError(
                f"llama.cpp could not create a context of {seqs} x {n_ctx} tokens for {gguf_path}."
            )
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.n_vocab = self.llm.n_vocab()
        self.lanes = [Lane(self, i) for i in range(seqs)]
        self.rng = np.random.default_rng()
        self.lock = threading.Lock()  # held while the context is in use (a decode, a state copy)
        self.cond = threading.Condition()
        self.incoming: list[_Task] = []
        self.closing = False
        self.park_idle_s, self.park_bytes = park_idle_s, park_bytes
        # park_ms: time the decode thread spent copying cells out and back in (parking, moving, returning)
        self.stats = {"steps": 0, "tokens": 0, "max_batch": 0, "parked": 0, "unparked": 0, "park_ms": 0.0}
        self._thread = threading.Thread(target=self._loop, daemon=True, name="batch-decode")
        self._thread.start()

    def run(self, lane: Lane, gen: Generation) -> CompletionResult:
        task = _Task(lane, gen)
        with self.cond:
            if self.closing:
                raise EngineError("The model is being unloaded.")
            self.incoming.append(task)
            self.cond.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return gen.result()

    def close(self) -> None:
        """Stop the decode thread (failing anything still queued) and free the context."""
        import llama_cpp

        with self.cond:
            self.closing = True
            self.cond.notify()
        self._thread.join()
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        self.ctx = None
        self.llm.close()

    # ------------------------------------------------------------ the decode thread

    def _loop(self) -> None:
        active: list[_Task] = []
        while True:
            with self.cond:
                while not self.incoming and not active and not self.closing:
                    self.cond.wait()
                admitted, self.incoming = self.incoming, []
                closing = self.closing
            if closing:
                for task in active + admitted:
                    self._finish(task, EngineError("The model was unloaded before the completion finished."))
                return
            active += admitted
            try:
                self._park_idle(active)
                for task in admitted:
                    self._admit(task)
                active = self._step(active)
            except Exception as exc:  # a failed decode fails its requests, not the engine
                logger.exception("batched decode failed")
                error = exc if isinstance(exc, EngineError) else EngineError(f"The completion failed: {exc}")
                for task in active:
                    self._forget(task.lane)
                    self._finish(task, error)
                active = []

    def _admit(self, task: _Task) -> None:
        """Keep the lane's cache up to the longest common prefix; the rest of the prompt is pending."""
        import llama_cpp

        lane, ids = task.lane, task.gen.ids
        with self.lock:
            if lane.parked is not None:
                self._unpark(lane)
        common = common_prefix(lane.tokens, ids)
        task.gen.cached = common
        keep = min(common, len(ids) - 1)  # the last prompt token is always evaluated: it gives the logits
        with self.lock:
            if not llama_cpp.llama_memory_seq_rm(self.mem, lane.seq, keep, -1):
                llama_cpp.llama_memory_seq_rm(self.mem, lane.seq, -1, -1)
                keep = 0
        del lane.tokens[keep:]
        task.pending = ids[keep:]

    def _step(self, active: list[_Task]) -> list[_Task]:
        """One decode call: the next token of every generating lane, then prompt slices."""
        import llama_cpp

        live = []
        for task in active:
            if task.gen.cancelled:  # superseded: its lane is free after this step
                task.gen.finish = "cancelled"
                self._finish(task)
            else:
                live.append(task)
        if not live:
            return []
        batch = self.batch
        batch.n_tokens = 0
        sampled: list[tuple[_Task, int]] = []

        def add(lane: Lane, token: int, logits: bool) -> None:
            i = batch.n_tokens
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, len(lane.tokens), 1
            batch.seq_id[i][0], batch.logits[i] = lane.seq, logits
            batch.n_tokens = i + 1
            lane.tokens.append(token)

        for task in live:
            if task.next is not None:
                sampled.append((task, batch.n_tokens))
                add(task.lane, task.next, True)
                task.next = None
        # Slices are only worth their extra calls when other lanes wait for their next token.
        budget = min(PROMPT_CHUNK, N_BATCH - batch.n_tokens) if sampled else N_BATCH
        for task in live:
            if not task.pending or budget <= 0:
                continue
            take, task.pending = task.pending[:budget], task.pending[budget:]
            budget -= len(take)
            for k, token in enumerate(take):
                last = k == len(take) - 1 and not task.pending
                if last:
                    sampled.append((task, batch.n_tokens))
                add(task.lane, token, last)
        started = time.monotonic()
        with self.lock:
            rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            raise EngineError(f"llama.cpp could not decode a batch of {batch.n_tokens} tokens (code {rc}).")
        self.stats["steps"] += 1
        self.stats["tokens"] += batch.n_tokens
        self.stats["max_batch"] = max(self.stats["max_batch"], batch.n_tokens)
        logger.debug(
            "decoded %d tokens for %d lanes in %.1f ms",
            batch.n_tokens,
            len(live),
            (time.monotonic() - started) * 1000,
        )
        for task, index in sampled:
            logits = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,)
            )
            try:
                token = task.gen.sample(logits, self.rng)
                if task.gen.accept(token):
                    self._finish(task)
                else:
                    task.next = token
            except Exception as exc:  # one request's failure (a callback, odd sampling options) is its own
                logger.exception("completion failed on slot %d", task.lane.seq)
                self._finish(task, EngineError(f"The completion failed: {exc}"))
        return [task for task in live if not task.done.is_set()]

    def _forget(self, lane: Lane) -> None:
        import llama_cpp

        with self.lock:
            llama_cpp.llama_memory_seq_rm(self.mem, lane.seq, -1, -1)
            lane.parked = None
            lane.tokens = []

    def _park_idle(self, active: list[_Task]) -> None:
        """Park the lanes idle for `park_idle_s`; then move the busy lanes' cells down into the room.

        llama.cpp places new cells from the lowest free one once the cache is mostly empty below its
        head, so a busy lane that is parked and restored at once ends up in the cells just freed.
        """
        if self.park_idle_s is None or self.park_bytes <= 0:
            return
        busy = {task.lane.seq for task in active}
        now = time.monotonic()
        idle = [
            lane for lane in self.lanes if lane.seq not in busy and now - lane.idle_since >= self.park_idle_s
        ]
        with self.lock:
            freed = [lane for lane in idle if lane.parked is None and lane.tokens and self._park(lane)]
            if not freed:
                return
            for task in active:
                lane = task.lane
                if lane.parked is None and lane.tokens and self._park(lane):
                    self._unpark(lane)

    def _park(self, lane: Lane) -> bool:
        """Copy `lane`'s cells to RAM and free them (the lock held). False: left as it was."""
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(self.ctx, lane.seq)
        if size + sum(other.parked[1] for other in self.lanes if other.parked) > self.park_bytes:
            return False
        started = time.monotonic()
        lane.parked = lane._copy_out(size)
        self._copy_time(started)
        if lane.parked is None:
            return False
        llama_cpp.llama_memory_seq_rm(self.mem, lane.seq, -1, -1)
        self.stats["parked"] += 1
        return True

    def _unpark(self, lane: Lane) -> None:
        """Copy a parked lane's cells back (the lock held); if they no longer fit it starts empty."""
        (buf, written), lane.parked = lane.parked, None
        started = time.monotonic()
        if lane._copy_in(buf, written):
            self.stats["unparked"] += 1
        self._copy_time(started)

    def _copy_time(self, started: float) -> None:
        """Count a copy out or back in as the decode thread's time lost to parking (`park_ms`)."""
        self.stats["park_ms"] += (time.monotonic() - started) * 1000

    @staticmethod
    def _finish(task: _Task, error: Exception | None = None) -> None:
        task.gen.ended = task.lane.idle_since = time.monotonic()
        task.error = error
        task.done.set()
