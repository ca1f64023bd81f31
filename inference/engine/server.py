"""The engine process: holds the served GGUF in llama.cpp and answers the web tier on loopback.

One process for the whole appliance (never one model copy per web worker). It polls the
database for the model it should serve and hot-swaps: load the new model beside the old one,
switch under the lock, and let the old one go once no request holds it.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from appliance.cpusets import usable_cpu_count
from appliance.engine_secret import engine_bind_check, engine_secret_check
from appliance.errors import EngineError, HearthError
from appliance.llm.fim import fim_format_get
from appliance.llm.runtime import llama_amx_built
from inference.engine.batched import BatchedModel, Lane
from inference.engine.kvstore import KvStore
from inference.engine.request import MAX_PROMPT_CHARS, EngineRequest, EngineRequestError
from inference.engine.result import EngineChoice, EngineResult, StreamDelta, StreamDone, Timings
from inference.engine.rolling import swap_turn, swap_turn_holder
from inference.engine.scheduler import Job, Pool, Scheduler
from inference.engine.selection import ServedModel, canary_model_select, served_model_select

logger = logging.getLogger(__name__)

# The largest body the gateway can send: MAX_PROMPT_CHARS characters, each at most 12 bytes as JSON
# (an escaped surrogate pair), plus the rest of the request.
MAX_BODY = MAX_PROMPT_CHARS * 12 + (64 << 10)
JOB_TIMEOUT_S = 300.0  # the longest a completion waits for a slot; generation has its own bounds


def pool_load(served: ServedModel, *, slots: int, n_ctx: int, n_threads: int, kv_cache_mb: int = 0) -> Pool:
    """Load `served` into one batched llama.cpp context of `slots` sequences of `n_ctx` tokens each."""
    if not Path(served.gguf_path).is_file():
        raise EngineError(f"GGUF file {served.gguf_path} does not exist.")
    started = time.monotonic()
    try:
        model = BatchedModel(
            served.gguf_path,
            fim_format_get(served.fim_format),
            seqs=slots,
            n_ctx=n_ctx,
            n_threads=n_threads,
        )
    except (ValueError, RuntimeError) as exc:
        raise EngineError(f"llama.cpp could not load {served.gguf_path}: {exc}") from exc
    kv = KvStore(kv_cache_mb << 20) if kv_cache_mb > 0 else None
    return Pool(
        served, model.lanes, time.monotonic() - started, kv=kv, on_close=model.close, stats=model.stats
    )


def slot_switch(pool: Pool, slot: int, leaving: str | None, arriving: str) -> None:
    """A slot changes user: park the leaving user's prompt cache, bring the arriving one's back.

    When nothing of the arriving user's can be restored, the slot is emptied: a prompt cache kept
    from someone else would let the arriving user confirm a guess of that prompt by how many of its
    tokens come back cached.
    """
    lane = pool.completers[slot]
    if pool.kv is not None and leaving is not None:
        pool.kv.save(leaving, lane)
    if pool.kv is None or not pool.kv.restore(arriving, lane):
        lane.clear()


def job_run(lane: Lane, job: Job) -> EngineResult:
    """Run one job's completions (n of them) on one slot; only the first one streams."""
    request: EngineRequest = job.body
    choices = []
    # Half the window at most goes to generation, so a prompt always keeps room.
    options = replace(
        request.sampling, max_tokens=min(request.sampling.max_tokens, lane.n_ctx // 2), trim_lines=True
    )
    for i in range(request.n):
        r = lane.complete(
            request.prefix,
            request.suffix,
            options,
            context=list(request.context),
            filepath=request.filepath,
            on_token=job.on_token if i == 0 else None,
            cancel=job.cancel,
        )
        cancelled = r.finish_reason == "cancelled"
        choices.append(
            EngineChoice(
                index=i,
                text="" if cancelled else r.text,  # stale: the newer request answers
                finish_reason=r.finish_reason,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                cached_tokens=r.cached_tokens,
                timings=Timings(**r.timings),
                stop_word=r.stop_word,
            )
        )
        if cancelled:
            break
    return EngineResult(
        choices=tuple(choices),
        superseded=choices[-1].finish_reason == "cancelled",
        can_infill=lane.can_infill,
    )


class Engine:
    """The served model in N slots, kept in step with the database by `refresh`."""

    def __init__(
        self,
        *,
        n_ctx: int,
        n_threads: int,
        slots: int = 1,
        poll_s: float = 2.0,
        kv_cache_mb: int = 512,
        name: str = "",
    ):
        self.n_ctx, self.n_threads, self.slots, self.poll_s = n_ctx, n_threads, max(1, slots), poll_s
        # This replica, to the others it takes turns with when a promotion rolls through them.
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.waiting_for = ""  # the replica whose swap this one waits for, if any
        self.kv_cache_mb = kv_cache_mb
        self.scheduler = Scheduler(slots=self.slots, run=job_run, switch=slot_switch)
        self.swap_lock = threading.Lock()
        self.last_error = ""
        self.failed_version: int | None = None
        self.swaps = 0
        self.stopping = threading.Event()
        # A canary: a candidate served beside the model above to the share of users the gateway
        # marks `canary`, in slots of its own; loaded only while the canary runs.
        self.canary: Scheduler | None = None
        self.canary_percent = 0
        self.canary_error = ""
        self.failed_canary: int | None = None

    @property
    def pool(self) -> Pool | None:
        return self.scheduler.pool

    def refresh(self) -> None:
        """Load whatever the database says should be served (and tried as a canary), if it is not
        loaded already."""
        from django.db import close_old_connections

        close_old_connections()
        self._refresh_served()
        self._refresh_canary()

    def _refresh_served(self) -> None:
        """The new model loads beside the old one, which keeps answering; the switch is atomic and
        the old model is closed only after its running requests finish. A model that fails to
        load is remembered and skipped, so the next poll falls back to the base model. A canary
        promoted to everyone is already loaded: its slots become the served ones."""
        wanted = served_model_select()
        if wanted is not None and wanted.version_pk is not None and wanted.version_pk == self.failed_version:
            wanted = served_model_select(exclude_version=self.failed_version)  # still broken: keep the base
        elif wanted is not None and wanted.version_pk != self.failed_version:
            self.failed_version = None  # another version was promoted since: it gets its chance
        if wanted is None:
            self.last_error = "No model to serve: register a base model first."
            return
        current = self.pool
        if current is not None and current.served == wanted:
            return
        canary = self.canary
        if canary is not None and canary.pool is not None and canary.pool.served == wanted:
            old, self.scheduler, self.canary, self.canary_percent = self.scheduler, canary, None, 0
            self.swaps += 1
            logger.info("serving %s to everyone: the canary's slots are the served ones now", wanted.id)
            threading.Thread(target=old.retire, daemon=True, name="retire-served").start()
            return
        if current is None:  # a first load takes nothing away from anyone: no turn needed
            self._load(wanted)
            return
        with swap_turn(self.name) as mine:
            if not mine:
                holder = swap_turn_holder() or "another replica"  # or its turn ended a moment ago
                if holder != self.waiting_for:
                    logger.info("waiting for %s to finish its swap before loading %s", holder, wanted.id)
                self.waiting_for = holder
                return
            self.waiting_for = ""
            self._load(wanted)

    def _refresh_canary(self) -> None:
        """Load the canary beside the served model while one runs; unload it once it ends. A canary
        that fails to load is skipped (its users get the served model) until another is started."""
        wanted = canary_model_select()
        if wanted is None:  # no canary (or it ended): a later one, even of the same version, gets its chance
            self.failed_canary, self.canary_error = None, ""
        elif wanted.served.version_pk == self.failed_canary:
            wanted = None
        else:
            self.failed_canary = None
        current = self.canary
        if wanted is None:
            if current is not None:
                self.canary, self.canary_percent = None, 0
                logger.info(
                    "the canary ended: unloading %s", current.pool.served.id if current.pool else "it"
                )
                threading.Thread(target=current.retire, daemon=True, name="retire-canary").start()
            return
        self.canary_percent = wanted.percent
        if current is not None and current.pool is not None and current.pool.served == wanted.served:
            return
        with swap_turn(self.name) as mine:
            if not mine:
                return  # another replica is loading a model: this one loads the canary next poll
            pool = self._pool_new(wanted.served)
            if pool is None:
                self.canary_error, self.failed_canary = self.last_error, wanted.served.version_pk
                self.last_error = ""
                return
            self.canary_error = ""
            if current is None:
                current = Scheduler(slots=self.slots, run=job_run, switch=slot_switch)
            current.swap(pool)
            self.canary = current
            logger.info("canary %s loaded for %d%% of users", wanted.served.id, wanted.percent)

    def _pool_new(self, wanted: ServedModel) -> Pool | None:
        """`wanted` loaded, or None with `last_error` saying why."""
        try:
            return pool_load(
                wanted,
                slots=self.slots,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                kv_cache_mb=self.kv_cache_mb,
            )
        except HearthError as exc:
            logger.error("could not load %s: %s", wanted.id, exc)
            self.last_error = str(exc)
            return None

    def _load(self, wanted: ServedModel) -> None:
        with self.swap_lock:
            new = self._pool_new(wanted)
            if new is None:
                if wanted.version_pk is not None:
                    self.failed_version = wanted.version_pk  # fall back to the base next poll
                return
            self.last_error = ""
            logger.info(
                "serving %s (%s) in %d batched slots, loaded in %.2f s",
                wanted.id,
                wanted.gguf_path,
                self.slots,
                new.load_seconds,
            )
            self.scheduler.swap(new)
            self.swaps += 1

    def watch(self) -> None:
        while not self.stopping.is_set():
            try:
                self.refresh()
            except Exception:  # keep serving the current model whatever the poll hit
                logger.exception("model refresh failed")
            self.stopping.wait(self.poll_s)

    def stop(self) -> None:
        """Stop polling and let the slot workers exit (tests, and a clean shutdown)."""
        self.stopping.set()
        self.scheduler.close()
        if self.canary is not None:
            self.canary.close()

    def _job(self, request: EngineRequest, on_token=None, on_done=None) -> tuple[Scheduler, Job]:
        """The job, and the slots that run it: the canary's for a user the gateway put in its share
        while a canary is loaded, else the served model's."""
        canary = self.canary if request.canary else None
        scheduler = canary if canary is not None and canary.pool is not None else self.scheduler
        if scheduler.pool is None:
            raise EngineError(self.last_error or "The engine has no model loaded yet.")
        return scheduler, Job(user=request.user, body=request, on_token=on_token, on_done=on_done)

    def submit(self, request: EngineRequest, on_token=None, on_done=None) -> Job:
        """Queue the request for a slot worker to run (a stream: the caller writes the pieces)."""
        scheduler, job = self._job(request, on_token, on_done)
        return scheduler.submit(job)

    def complete(self, request: EngineRequest, on_token=None) -> EngineResult:
        """Run the request in this thread once it has a slot (no slot worker in between)."""
        scheduler, job = self._job(request, on_token)
        return scheduler.run(job, timeout=JOB_TIMEOUT_S)

    def _canary_health(self) -> dict | None:
        canary = self.canary
        pool = canary.pool if canary is not None else None
        if pool is None:
            return {"error": self.canary_error, "version": self.failed_canary} if self.canary_error else None
        return {
            "model": pool.served.id,
            "version": pool.served.version_pk,
            "percent": self.canary_percent,
            "load_seconds": round(pool.load_seconds, 3),
            "error": self.canary_error,
            **canary.snapshot(),
        }

    def health(self) -> dict:
        pool = self.pool
        return {
            "status": "ok" if pool else "loading",
            "model": pool.served.id if pool else None,
            "version": pool.served.version_pk if pool else None,
            "gguf": pool.served.gguf_path if pool else None,
            "can_infill": pool.completers[0].can_infill if pool and pool.completers else None,
            "load_seconds": round(pool.load_seconds, 3) if pool else None,
            "error": self.last_error,
            "failed_version": self.failed_version,  # a promoted version that would not load: base served
            "swaps": self.swaps,
            "swap_waiting_for": self.waiting_for,  # a promotion rolls through replicas one at a time
            "kv_store": pool.kv.stats if pool and pool.kv else None,
            "batches": dict(pool.stats) if pool and pool.stats else None,  # decode steps and tokens in them
            "canary": self._canary_health(),  # a candidate served to a share of users, if one runs
            **self.scheduler.snapshot(),
        }


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


class EngineHandler(BaseHTTPRequestHandler):
    """The engine's HTTP surface; `engine_handler` binds it to one Engine."""

    engine: Engine
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # quiet: the web tier logs requests
        logger.debug(fmt, *args)

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # Headers and body in one write (end_headers would send the headers alone): one system call
        # and one wake-up of the web tier's reader fewer per answer.
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def _authorized(self) -> bool:
        """Only the web tier, which holds the shared secret, may call the engine."""
        if engine_secret_check(self.headers.get("Authorization")):
            return True
        self.close_connection = True  # the body (if any) stays unread
        self._json(401, {"error": "The engine answers only Hearth's web tier (missing or wrong secret)."})
        return False

    def do_GET(self):
        if not self._authorized():
            return
        if self.path in ("/health", "/ready"):
            h = self.engine.health()
            ready = h["status"] == "ok"
            self._json(200 if ready or self.path == "/health" else 503, h)
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self):
        if not self._authorized():
            return
        request = self._request()
        if request is None:
            return
        if request.stream:
            self._stream(request)
            return
        try:
            self._json(200, self.engine.complete(request).to_dict())
        except EngineError as exc:
            self._json(503, {"error": str(exc)})

    def _request(self) -> EngineRequest | None:
        """The body as an EngineRequest, or None once a 4xx has been answered."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if self.path != "/complete" or not 0 <= length <= MAX_BODY:
            self.close_connection = True
            status = 404 if self.path != "/complete" else (413 if length > MAX_BODY else 400)
            self._json(status, {"error": "not found" if status == 404 else "bad body length"})
            return None
        try:
            return EngineRequest.from_json(
                json.loads(self.rfile.read(length) or b"{}", parse_constant=_no_constant)
            )
        except (ValueError, RecursionError):
            self._json(400, {"error": "The body is not valid JSON (NaN and Infinity are not JSON)."})
        except EngineRequestError as exc:
            self._json(exc.status, {"error": str(exc), "field": exc.field})
        return None

    def _stream(self, request: EngineRequest) -> None:
        """Newline-delimited JSON: a `StreamDelta` per generated piece, then the `StreamDone`.

        The decode thread only puts text on a queue; this thread writes the socket, and cancels
        the job if the web tier has gone away.
        """
        pieces: queue.SimpleQueue = queue.SimpleQueue()
        try:
            job = self.engine.submit(request, on_token=pieces.put, on_done=lambda: pieces.put(None))
        except EngineError as exc:
            self._json(503, {"error": str(exc)})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = ""

        def chunk(payload: dict) -> None:
            data = json.dumps(payload).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            while (text := pieces.get()) is not None:
                if len(text) > len(sent) and text.startswith(sent):
                    chunk(StreamDelta(text[len(sent) :]).to_dict())
                    sent = text
            try:
                result = Scheduler.wait(job, timeout=1)
                chunk(StreamDone(result, streamed=sent).to_dict())
            except EngineError as exc:
                chunk({"error": str(exc)})
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            job.cancel.set()


def engine_handler(engine: Engine) -> type[EngineHandler]:
    return type("Handler", (EngineHandler,), {"engine": engine})


def engine_server_build(
    *,
    host: str,
    port: int,
    n_ctx: int,
    n_threads: int | None = None,
    poll_s: float = 2.0,
    slots: int = 1,
    kv_cache_mb: int = 512,
) -> tuple[ThreadingHTTPServer, Engine]:
    """An engine with its model loaded, its watcher running, and an HTTP server not yet serving.

    Refuses a non-loopback `host` unless the shared secret was configured on purpose.
    """
    engine_bind_check(host)
    engine = Engine(
        n_ctx=n_ctx,
        n_threads=n_threads or usable_cpu_count(),
        slots=slots,
        poll_s=poll_s,
        kv_cache_mb=kv_cache_mb,
        name=f"{socket.gethostname()}:{port}",
    )
    engine.refresh()
    threading.Thread(target=engine.watch, daemon=True, name="model-watch").start()
    server = ThreadingHTTPServer((host, port), engine_handler(engine))
    server.daemon_threads = True
    return server, engine


def serve(
    *,
    host: str,
    port: int,
    n_ctx: int,
    n_threads: int | None = None,
    slots: int = 1,
    poll_s: float = 2.0,
    kv_cache_mb: int = 512,
) -> None:
    server, engine = engine_server_build(
        host=host,
        port=port,
        n_ctx=n_ctx,
        n_threads=n_threads,
        slots=slots,
        poll_s=poll_s,
        kv_cache_mb=kv_cache_mb,
    )
    logger.info("engine listening on http://%s:%d with %d slots", host, port, engine.slots)
    if llama_amx_built():
        logger.warning(
            "this llama.cpp was built with its AMX kernels, which crash on the first completion on some "
            "hosts; rebuild llama-cpp-python with packaging/llama-wheel.sh (without HEARTH_LLAMA_AMX=1)"
        )
    try:
        server.serve_forever()
    finally:
        server.server_close()
