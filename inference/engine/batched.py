"""Continuous batching: every active request's next token in one llama.cpp decode call.

The served GGUF gets one llama.cpp context holding N sequences, each in a KV stream of its own.
Each sequence is a slot (a `Lane`): the scheduler gives it one job at a time, and a user keeps coming
back to the lane holding their prompt, so a keystroke evaluates only the tokens after the longest
common prefix. One thread steps all lanes together: each step puts the next token of every
generating lane, plus a slice of any newly admitted prompt, into one `llama_decode`. A new request
starts at the next step instead of waiting for the others to finish.

llama.cpp evaluates one step in a single pass over the weights only when the step's sequences are
consecutive streams, in increasing order; every gap (an idle stream between two busy ones) costs
another pass. So a step's tokens go in stream order, and a gap between busy streams that lasts a few
steps is closed: the highest busy lane and the idle lane in the gap change places (a few ms).

Prompt building, token healing, stop handling and the rest of a completion's rules are the
`Generation` of `appliance.llm.sampling`, shared with the sequential path.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time

import numpy as np

from appliance.cpusets import llama_threads
from appliance.errors import EngineError
from appliance.llm.prompt import Completer
from appliance.llm.runtime import flash_attention, llama_open
from appliance.llm.sampling import CompletionResult, Generation, SamplingOptions, common_prefix

logger = logging.getLogger(__name__)

# Tokens of newly admitted prompts evaluated per step while other lanes are generating: a long cold
# prompt is spread over several steps so that it delays their next tokens a bounded amount each time.
PROMPT_CHUNK = 64
# Steps a gap between busy streams may last before a lane is moved into it (see `_compact`).
GAP_STEPS = 3
N_BATCH = 512


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
            state = self._copy_out()
            return (bytes(memoryview(state[0])[: state[1]]), list(self.tokens)) if state else None

    def state_set(self, data: bytes, tokens: list[int]) -> bool:
        """Replace this sequence's KV cells with parked ones; False (and empty) if they do not fit."""
        with self.model.lock:
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
    ):
        import llama_cpp

        # The Llama object loads the weights and the tokenizer; decoding uses a context of our own
        # on the same weights, so its own context only needs to be tiny.
        self.llm = llama_open(gguf_path, n_ctx=64, n_batch=64, seed=0, **llama_threads(n_threads))
        self.completer = Completer(self.llm, fim)
        self.n_ctx_seq = n_ctx
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = seqs * n_ctx
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = seqs
        params.n_threads = params.n_threads_batch = n_threads
        # A KV stream per sequence: a token attends over its own user's cells only. In one unified cache
        # it also scanned every other user's (masked out). SmolLM2-135M Q4_1, 2 cores, 8 lanes holding
        # 370 cached tokens each: a step of one token per lane took 69 ms with streams against 83 ms
        # unified, a lone token 16 ms against 21 ms (llama-server's own default for --parallel, too).
        params.kv_unified = False
        # The attention kernels of the sequential path (`llama_open`), so greedy answers match.
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attention()
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
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
        self._logit_views: dict[int, np.ndarray] = {}  # output buffer address -> logits view
        self.lanes = [Lane(self, i) for i in range(seqs)]
        self.rng = np.random.default_rng()
        self.lock = threading.Lock()  # held while the context is in use (a decode, a state copy)
        self.cond = threading.Condition()
        self.incoming: list[_Task] = []
        self.closing = False
        # moves: lanes moved down into a gap between busy streams; move_ms: the decode thread's time
        # spent copying their cells
        self._gapped = 0  # steps in a row whose busy streams were in more than one run
        self.stats = {"steps": 0, "tokens": 0, "max_batch": 0, "moves": 0, "move_ms": 0.0}
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
                for task in admitted:
                    self._admit(task)
                active = self._step(active)
                self._compact(active)
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

        # Slices are only worth their extra calls when other lanes wait for their next token.
        generating = sum(task.next is not None for task in live)
        budget = min(PROMPT_CHUNK, N_BATCH - generating) if generating else N_BATCH
        slices: dict[_Task, list[int]] = {}
        for task in live:  # the prompt budget goes in arrival order
            if task.next is None and task.pending and budget > 0:
                slices[task], task.pending = task.pending[:budget], task.pending[budget:]
                budget -= len(slices[task])
        for task in sorted(live, key=lambda t: t.lane.seq):  # in stream order: one pass over the weights
            if task.next is not None:
                sampled.append((task, batch.n_tokens))
                add(task.lane, task.next, True)
                task.next = None
            for k, token in enumerate(slices.get(task, ())):
                last = k == len(slices[task]) - 1 and not task.pending
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
            logits = self._logits(index)
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

    def _logits(self, index: int) -> np.ndarray:
        """Batch token `index`'s logits, read in place: a view of llama.cpp's output buffer, made once
        per address (a new view each step cost about as much as the sampling itself)."""
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.ctx, index)
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        view = self._logit_views.get(address)
        if view is None:
            if len(self._logit_views) >= 4 * N_BATCH:  # the buffer moved often: start again
                self._logit_views.clear()
            view = self._logit_views[address] = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        return view

    def _forget(self, lane: Lane) -> None:
        import llama_cpp

        with self.lock:
            llama_cpp.llama_memory_seq_rm(self.mem, lane.seq, -1, -1)
            lane.tokens = []

    def _compact(self, active: list[_Task]) -> None:
        """Close a gap between busy streams that has lasted `GAP_STEPS` steps: the lane on the highest
        busy stream changes places with the idle lane on the lowest free one (mid-answer or not, each
        keeping its own cells). A burst of requests fills its gaps by itself within a step or two, so
        only a gap that stays (a few users on scattered slots) pays for the copy."""
        busy = {task.lane.seq for task in active}
        gapped = sum(seq - 1 not in busy for seq in busy) > 1
        self._gapped = self._gapped + 1 if gapped else 0
        if self._gapped < GAP_STEPS:
            return
        self._gapped = 0
        free = min(seq for seq in range(len(self.lanes)) if seq not in busy)
        top = max(active, key=lambda task: task.lane.seq)
        if not self._swap(top.lane, next(lane for lane in self.lanes if lane.seq == free)):
            active.remove(top)
            self._finish(top, EngineError("The completion lost its KV cache while it moved; send it again."))

    def _swap(self, lane: Lane, other: Lane) -> bool:
        """Exchange two lanes' streams, cells and all; False if `lane` came out without its cells.

        Nothing changes when either copy cannot be taken; an idle lane whose cells do not go back in
        starts empty (its user's next prompt is evaluated cold)."""
        import llama_cpp

        started = time.monotonic()
        with self.lock:
            states = [(each, each._copy_out() if each.tokens else None) for each in (lane, other)]
            if any(each.tokens and state is None for each, state in states):
                return True
            for each in (lane, other):
                llama_cpp.llama_memory_seq_rm(self.mem, each.seq, -1, -1)
            lane.seq, other.seq = other.seq, lane.seq
            for each, state in states:
                if state is None or not each._copy_in(*state):
                    each.tokens = []
            kept = bool(lane.tokens) or states[0][1] is None
        self.stats["moves"] += 1
        self.stats["move_ms"] += (time.monotonic() - started) * 1000
        return kept

    @staticmethod
    def _finish(task: _Task, error: Exception | None = None) -> None:
        task.gen.ended = time.monotonic()
        task.error = error
        task.done.set()
