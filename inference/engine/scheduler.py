"""Parallel slots over one served model, with per-user cache affinity and supersession.

A slot is one sequence of the served GGUF's batched llama.cpp context (`inference.engine.batched`:
all slots' next tokens are decoded together, each sequence keeps its own KV cells). Jobs wait in a
single FIFO queue; whenever a slot frees up or a job arrives, the scheduler hands queued jobs to free
slots. A job sent with `run` is then run by the thread that sent it (the engine's HTTP thread, so an
answer goes from the decode thread to the socket with one thread hand-off, and nothing else wakes);
one sent with `submit` is run by that slot's own worker thread (a stream, whose sender writes the
pieces meanwhile). Which job goes where:

- **Supersede.** Each user (API token) has at most one live job. A newer job from the same user
  cancels the older one (between two tokens if it is running) and takes its place in the queue,
  so a fast typist neither jumps the queue nor loses their turn; other users are served in order.
- **Cache affinity.** A worker prefers the job of a user whose cache its slot holds (the user's
  previous request ran there and nobody's since, so only the new keystrokes are evaluated). It
  takes any other job only when that job's own slot is busy or gone to someone else, and it always
  takes the oldest job once that has waited `max_wait_s`, so affinity never starves anyone. A job
  with no slot of its own goes first to a slot holding nobody's cache, then to the one used least
  recently, so it does not evict a cache whose user is about to come back. When a slot does change
  user, `switch` parks the leaving user's cache and restores the arriving one's.
- **Hot swap.** `swap()` installs a freshly loaded model; jobs dispatched from then on run on it,
  jobs already running finish on the old one, which is then closed. No job fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from appliance.errors import EngineError
from inference.engine.result import EngineResult

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    user: str | None
    body: object  # what `run` needs: the engine's EngineRequest
    on_token: Callable[[str], None] | None = None
    on_done: Callable[[], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    result: EngineResult | None = None
    error: Exception | None = None
    enqueued_at: float = field(default_factory=time.monotonic)
    # Set once the job has a slot (`slot`) or is answered without running (superseded in the queue).
    ready: threading.Event = field(default_factory=threading.Event)
    slot: int | None = None
    run_here: bool = False  # run by the thread that sent it (`Scheduler.run`), not by a slot worker


class Pool:
    """One loaded model: its identity, its N slots (completers), and how to unload it."""

    def __init__(
        self,
        served,
        completers: list,
        load_seconds: float,
        kv=None,
        on_close: Callable[[], None] | None = None,
        stats: dict | None = None,
    ):
        self.served = served
        self.completers = completers
        self.load_seconds = load_seconds
        self.owners: list[str | None] = [None] * len(completers)  # whose prompt each slot's KV holds
        self.kv = kv  # a KvStore parking users' caches while their slot serves someone else
        self.on_close = on_close
        self.stats = stats

    def close(self) -> None:
        if self.on_close is not None:
            self.on_close()
        self.completers = []


class Scheduler:
    def __init__(
        self,
        *,
        slots: int,
        run: Callable[[object, Job], EngineResult],
        switch: Callable[[Pool, int, str | None, str], None] | None = None,
        max_wait_s: float = 1.0,
    ):
        self.n = slots
        self.max_wait_s = max_wait_s
        self._run = run  # (completer, job) -> EngineResult, called outside the lock
        self._switch = switch  # (pool, slot, leaving user, arriving user): park / restore caches
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)  # a slot freed (what a draining swap waits for)
        # Each slot worker sleeps on its own condition and wakes only for the job handed to it.
        self._slot_conds = [threading.Condition(self.lock) for _ in range(slots)]
        self._handoff: list[Job | None] = [None] * slots
        self.pool: Pool | None = None
        self.queue: deque[Job] = deque()
        self.latest: dict[str, Job] = {}
        self.affinity: dict[str, int] = {}
        self.running: list[tuple[Pool, Job] | None] = [None] * slots
        self.used_at = [0.0] * slots  # when each slot last finished a job
        self.stats = {"requests": 0, "superseded": 0, "cache_affine": 0}
        self.closed = False
        self._workers = [
            threading.Thread(target=self._work, args=(i,), daemon=True, name=f"slot-{i}")
            for i in range(slots)
        ]
        for worker in self._workers:
            worker.start()

    # ------------------------------------------------------------ submitting

    def submit(self, job: Job, *, run_here: bool = False) -> Job:
        """Queue `job`; a slot worker runs it unless `run_here` (then `run` does, in this thread)."""
        job.run_here = run_here
        with self.lock:
            if self.pool is None:
                raise EngineError("The engine has no model loaded yet.")
            self.stats["requests"] += 1
            old = self.latest.get(job.user) if job.user else None
            if old is not None and not old.done.is_set():
                old.cancel.set()
                self.stats["superseded"] += 1
                try:  # a queued job is answered now, and the newer one takes its place
                    at = self.queue.index(old)
                    self.queue[at] = job
                    job.enqueued_at = old.enqueued_at  # the user's wait so far still counts
                    self._finish_cancelled(old)
                except ValueError:
                    self.queue.append(job)
            else:
                self.queue.append(job)
            if job.user:
                self.latest[job.user] = job
            self._dispatch()
        return job

    def run(self, job: Job, timeout: float | None = None) -> EngineResult:
        """Submit `job` and run it in this thread once it has a slot; its result (or its error).

        `timeout` bounds the wait for a slot: a job still queued then is withdrawn and fails. Once
        running, a job is bounded by its own `max_tokens` and `deadline_s`, and by supersession."""
        self.submit(job, run_here=True)
        if not job.ready.wait(timeout):
            with self.lock:
                if job.slot is None and not job.done.is_set():
                    job.cancel.set()
                    self.queue.remove(job)
                    if self.latest.get(job.user) is job:
                        del self.latest[job.user]
                    self._finish_cancelled(job)
                    raise EngineError("The engine did not answer in time.")
        if not job.done.is_set():  # not answered in the queue: the slot `_dispatch` reserved is ours
            with self.lock:
                pool = self.running[job.slot][0]
            self._execute(job.slot, pool, job)
        return self._answer(job)

    @staticmethod
    def wait(job: Job, timeout: float | None = None) -> EngineResult:
        """The result of a job sent with `submit` (a slot worker runs it), whichever scheduler took it."""
        if not job.done.wait(timeout):
            job.cancel.set()
            raise EngineError("The engine did not answer in time.")
        return Scheduler._answer(job)

    @staticmethod
    def _answer(job: Job) -> EngineResult:
        if job.error is not None:
            raise job.error
        return job.result

    def _finish_cancelled(self, job: Job) -> None:
        job.result = self._cancelled_result()
        self._done(job)

    def _cancelled_result(self) -> EngineResult:
        pool = self.pool
        return EngineResult.cancelled(
            model=pool.served.id if pool else "", version=pool.served.version_pk if pool else None
        )

    @staticmethod
    def _done(job: Job) -> None:
        job.done.set()
        job.ready.set()
        if job.on_done is not None:
            job.on_done()

    # ------------------------------------------------------------ swapping

    def swap(self, pool: Pool, *, drain_timeout: float = 300.0) -> None:
        """Serve `pool` from now on; close the previous pool once its running jobs are done."""
        with self.lock:
            old, self.pool = self.pool, pool
            self.affinity.clear()  # the new slots' caches are empty
            self._dispatch()
            deadline = time.monotonic() + drain_timeout
            while old is not None and any(r is not None and r[0] is old for r in self.running):
                if not self.cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    logger.warning("old model still busy after %.0f s; closing it anyway", drain_timeout)
                    break
        if old is not None:
            old.close()

    # ------------------------------------------------------------ working

    def _home(self, job: Job) -> int | None:
        """The slot holding `job`'s user's cache, if any (the user's last slot, not taken since)."""
        home = self.affinity.get(job.user) if job.user else None
        return home if home is not None and self.pool.owners[home] == job.user else None

    def _pick(self, i: int) -> Job | None:
        # Cache affinity may reorder the queue, but never past a job that has waited too long.
        if self.queue and time.monotonic() - self.queue[0].enqueued_at > self.max_wait_s:
            return self.queue[0]
        fallback = None
        for job in self.queue:
            home = self._home(job)
            if home == i:
                self.stats["cache_affine"] += 1
                return job
            if fallback is None and self._may_move(job, home):
                fallback = job
        return fallback

    def _may_move(self, job: Job, home: int | None) -> bool:
        """Whether `job` may run away from its cache: yes unless its slot is about to free up.

        A home slot busy with the same user's superseded job frees within one token, so waiting
        for it beats evaluating the whole prompt cold elsewhere.
        """
        if home is None:
            return True
        running = self.running[home]
        return running is not None and running[1].user != job.user

    def _dispatch(self) -> None:
        """Hand queued jobs to free slots, waking only the thread that will run each (lock held)."""
        if self.pool is None or self.closed:
            return
        owners = self.pool.owners
        # Slots holding nobody's cache first, then the least recently used: what a job with no slot
        # of its own takes there evicts the cache least likely to be wanted back.
        for i in sorted(range(self.n), key=lambda i: (owners[i] is not None, self.used_at[i])):
            if not self.queue:
                return
            if self.running[i] is not None:
                continue
            job = self._pick(i)
            if job is None:
                continue
            self.queue.remove(job)
            self.running[i] = (self.pool, job)
            job.slot = i
            if job.run_here:
                job.ready.set()
            else:
                self._handoff[i] = job
                self._slot_conds[i].notify()

    def _work(self, i: int) -> None:
        """Slot `i`'s worker: runs the jobs handed to it that no sender runs itself."""
        while True:
            with self.lock:
                while self._handoff[i] is None:
                    if self.closed:
                        return
                    self._slot_conds[i].wait()
                job, self._handoff[i] = self._handoff[i], None
                pool = self.running[i][0]
            self._execute(i, pool, job)

    def _execute(self, i: int, pool: Pool, job: Job) -> None:
        """Run `job` on slot `i` of `pool` (reserved for it by `_dispatch`), then free the slot."""
        try:
            if job.cancel.is_set():  # superseded between its dispatch and now
                job.result = self._cancelled_result()
            else:
                if job.user and pool.owners[i] != job.user:
                    if self._switch is not None:
                        self._switch(pool, i, pool.owners[i], job.user)
                    pool.owners[i] = job.user
                dropped = 0
                if hasattr(job.body, "served_by"):  # an EngineRequest: context chosen for this model?
                    job.body, dropped = job.body.served_by(pool.served.version_pk)
                job.result = replace(
                    self._run(pool.completers[i], job),
                    model=pool.served.id,
                    version=pool.served.version_pk,
                    slot=i,
                    context_dropped=dropped,
                )
        except Exception as exc:
            logger.exception("completion failed on slot %d", i)
            job.error = exc if isinstance(exc, EngineError) else EngineError(f"The completion failed: {exc}")
        finally:
            with self.lock:
                self.running[i] = None
                self.used_at[i] = time.monotonic()
                if job.user:
                    self.affinity[job.user] = i
                    if self.latest.get(job.user) is job:
                        del self.latest[job.user]
                self._done(job)
                self.cond.notify_all()
                self._dispatch()

    def retire(self, *, drain_timeout: float = 300.0) -> None:
        """Stop for good once the queued and running jobs are answered, then unload the model (a canary
        that ended: its users are sent to the served model meanwhile, so nothing new arrives)."""
        with self.lock:
            deadline = time.monotonic() + drain_timeout
            while self.queue or any(r is not None for r in self.running):
                if not self.cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    logger.warning(
                        "a retired model is still busy after %.0f s; closing it anyway", drain_timeout
                    )
                    break
            pool, self.pool = self.pool, None
        self.close()
        if pool is not None:
            pool.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.cond.notify_all()
            for cond in self._slot_conds:
                cond.notify()

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "slots": self.n,
                "busy": sum(r is not None for r in self.running),
                "queued": len(self.queue),
                **self.stats,
            }
