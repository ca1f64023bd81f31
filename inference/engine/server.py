"""The engine process: holds the served GGUF in llama.cpp and answers the web tier on loopback.

One process for the whole appliance (never one model copy per web worker). It polls the
database for the model it should serve and hot-swaps: load the new model beside the old one,
switch under the lock, and let the old one go once no request holds it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from appliance.errors import EngineError, HearthError
from inference.engine.completion import Completer
from inference.engine.selection import ServedModel, served_model_select
from trainer.basemodels.fim import fim_format_get

logger = logging.getLogger(__name__)

MAX_BODY = 1 << 20


class Slot:
    """A loaded model and the lock that serialises requests on it."""

    def __init__(self, served: ServedModel, *, n_ctx: int, n_threads: int):
        from llama_cpp import Llama

        if not Path(served.gguf_path).is_file():
            raise EngineError(f"GGUF file {served.gguf_path} does not exist.")
        started = time.monotonic()
        try:
            llm = Llama(model_path=served.gguf_path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=0)
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {served.gguf_path}: {exc}") from exc
        self.served = served
        self.completer = Completer(llm, fim_format_get(served.fim_format))
        self.lock = threading.Lock()
        self.load_seconds = time.monotonic() - started


class Engine:
    def __init__(self, *, n_ctx: int, n_threads: int, poll_s: float = 2.0):
        self.n_ctx, self.n_threads, self.poll_s = n_ctx, n_threads, poll_s
        self.slot: Slot | None = None
        self.swap_lock = threading.Lock()
        self.last_error = ""
        self.failed_version: int | None = None
        self.requests = 0

    def refresh(self) -> None:
        """Load whatever the database says should be served, if it is not loaded already."""
        from django.db import close_old_connections

        close_old_connections()
        wanted = served_model_select(exclude_version=self.failed_version)
        if wanted is None:
            self.last_error = "No model to serve: register a base model first."
            return
        if self.slot is not None and self.slot.served == wanted:
            return
        with self.swap_lock:
            try:
                new = Slot(wanted, n_ctx=self.n_ctx, n_threads=self.n_threads)
            except HearthError as exc:
                logger.error("could not load %s: %s", wanted.id, exc)
                self.last_error = str(exc)
                if wanted.version_pk is not None:
                    self.failed_version = wanted.version_pk  # fall back to the base next poll
                return
            old, self.slot = self.slot, new
            self.last_error = ""
            logger.info("serving %s (%s), loaded in %.2f s", wanted.id, wanted.gguf_path, new.load_seconds)
            if old is not None:
                with old.lock:  # wait for in-flight requests on the old model to finish
                    pass

    def watch(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception:  # keep serving the current model whatever the poll hit
                logger.exception("model refresh failed")
            time.sleep(self.poll_s)

    def complete(self, body: dict, on_token=None) -> dict:
        slot = self.slot
        if slot is None:
            raise EngineError(self.last_error or "The engine has no model loaded yet.")
        n = int(body.get("n", 1))
        choices = []
        with slot.lock:
            self.requests += 1
            for i in range(n):
                r = slot.completer.complete(
                    body.get("prefix", ""), body.get("suffix"),
                    max_tokens=int(body.get("max_tokens", 64)), temperature=float(body.get("temperature", 0.0)),
                    top_p=float(body.get("top_p", 1.0)), stop=body.get("stop") or [],
                    deadline_s=body.get("deadline_s"), on_token=on_token if i == 0 else None,
                )
                choices.append({"index": i, "text": r.text, "finish_reason": r.finish_reason, "timings": r.timings,
                                "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                                "cached_tokens": r.cached_tokens})
        return {"model": slot.served.id, "can_infill": slot.completer.can_infill, "choices": choices}

    def health(self) -> dict:
        slot = self.slot
        return {
            "status": "ok" if slot else "loading",
            "model": slot.served.id if slot else None,
            "gguf": slot.served.gguf_path if slot else None,
            "can_infill": slot.completer.can_infill if slot else None,
            "error": self.last_error,
            "requests": self.requests,
        }


def _handler(engine: Engine):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: the web tier logs requests
            logger.debug(fmt, *args)

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path in ("/health", "/ready"):
                h = engine.health()
                ready = h["status"] == "ok"
                self._json(200 if ready or self.path == "/health" else 503, h)
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/complete" or length > MAX_BODY:
                self._json(404 if self.path != "/complete" else 413, {"error": "bad request"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._json(400, {"error": "body is not JSON"})
                return
            if body.get("stream"):
                self._stream(body)
                return
            try:
                self._json(200, engine.complete(body))
            except EngineError as exc:
                self._json(503, {"error": str(exc)})

        def _stream(self, body: dict) -> None:
            """Newline-delimited JSON: one {"delta": ...} per generated piece, then the final result."""
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = {"text": ""}

            def chunk(payload: dict) -> None:
                data = json.dumps(payload).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def on_token(text: str) -> None:
                if len(text) > len(sent["text"]) and text.startswith(sent["text"]):
                    chunk({"delta": text[len(sent["text"]):]})
                    sent["text"] = text

            try:
                result = engine.complete(body, on_token=on_token)
                final = result["choices"][0]["text"]
                # Stop strings are cut after generation: the final text is authoritative.
                chunk({"done": True, "result": result, "streamed": sent["text"], "final": final})
            except EngineError as exc:
                chunk({"error": str(exc)})
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def engine_server_build(*, host: str, port: int, n_ctx: int, n_threads: int | None = None,
                        poll_s: float = 2.0) -> tuple[ThreadingHTTPServer, Engine]:
    """An engine with its model loaded, its watcher running, and an HTTP server not yet serving."""
    engine = Engine(n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1, poll_s=poll_s)
    engine.refresh()
    threading.Thread(target=engine.watch, daemon=True, name="model-watch").start()
    server = ThreadingHTTPServer((host, port), _handler(engine))
    server.daemon_threads = True
    return server, engine


def serve(*, host: str, port: int, n_ctx: int, n_threads: int | None = None) -> None:
    server, _ = engine_server_build(host=host, port=port, n_ctx=n_ctx, n_threads=n_threads)
    logger.info("engine listening on http://%s:%d", host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
