"""The web tier's client of the engine process (loopback HTTP, one connection per thread and replica).

With several replicas (HEARTH_ENGINE_URLS) each user is routed by rendezvous hashing, so a user keeps
hitting the replica that holds their prompt cache, and losing a replica moves only that replica's users.
A replica that refuses a connection is taken out for HEARTH_ENGINE_RETRY_S seconds and is back once a
/health probe answers. Every call carries the instance's shared secret: the engine answers nobody else."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlparse

from django.conf import settings

from appliance.engine_secret import engine_auth_headers
from appliance.errors import EngineError
from inference.api.errors import RequestError
from inference.engine.request import EngineRequest
from inference.engine.result import (
    EngineReplyError,
    EngineResult,
    StreamDelta,
    StreamDone,
    stream_message_from_dict,
)

_local = threading.local()
_down_until: dict[tuple[str, int], float] = {}  # replica → monotonic time it may be probed again
_down_lock = threading.Lock()


def engine_replicas() -> list[tuple[str, int]]:
    """(host, port) of every engine replica, in configuration order."""
    if not settings.HEARTH_ENGINE_URLS:
        return [(settings.HEARTH_ENGINE_HOST, settings.HEARTH_ENGINE_PORT)]
    return [(u.hostname or "127.0.0.1", u.port or 80) for u in map(urlparse, settings.HEARTH_ENGINE_URLS)]


def replica_order(user: str, replicas: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Rendezvous hashing: the user's preferred replica first, then the one they move to if it fails."""

    def weight(replica: tuple[str, int]) -> bytes:
        return hashlib.sha256(f"{user}|{replica[0]}:{replica[1]}".encode()).digest()

    return sorted(replicas, key=weight, reverse=True)


def _usable(replica: tuple[str, int]) -> bool:
    """Up, or out long enough to deserve a /health probe (which brings it back when it answers)."""
    with _down_lock:
        until = _down_until.get(replica)
    if until is None:
        return True
    if time.monotonic() < until:
        return False
    try:
        conn = http.client.HTTPConnection(*replica, timeout=1.0)
        conn.request("GET", "/health", headers=engine_auth_headers())
        ok = conn.getresponse().status == 200
        conn.close()
    except (ConnectionError, http.client.HTTPException, OSError):
        ok = False
    _mark(replica, up=ok)
    return ok


def _mark(replica: tuple[str, int], *, up: bool) -> None:
    with _down_lock:
        if up:
            _down_until.pop(replica, None)
        else:
            _down_until[replica] = time.monotonic() + settings.HEARTH_ENGINE_RETRY_S


def _connection(timeout: float, replica: tuple[str, int] | None = None) -> http.client.HTTPConnection:
    replica = replica or engine_replicas()[0]
    conns = _local.__dict__.setdefault("conns", {})
    conn = conns.get(replica)
    if conn is None or conn.sock is None:
        conn = http.client.HTTPConnection(*replica, timeout=timeout)
        conn.connect()
        # Small JSON answers: without NODELAY, Nagle + delayed ACK cost ~40 ms per request.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[replica] = conn
    conn.timeout = timeout
    conn.sock.settimeout(timeout)
    return conn


def _request(method: str, path: str, body: dict | None, timeout: float) -> http.client.HTTPResponse:
    """Send to the user's replica; one that cannot be reached is taken out and the next one tried."""
    replicas = engine_replicas()
    order = replica_order(str((body or {}).get("user") or ""), replicas) if len(replicas) > 1 else replicas
    usable = [r for r in order if len(order) == 1 or _usable(r)] or order  # all out: try them anyway
    last: Exception | None = None
    for replica in usable:
        try:
            response = _request_one(replica, method, path, body, timeout)
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            last = exc
            if len(replicas) > 1:
                _mark(replica, up=False)
            continue
        return response
    raise EngineError(
        "The Hearth engine is not reachable; start it with `python manage.py inference_serve`."
    ) from last


def _request_one(
    replica, method: str, path: str, body: dict | None, timeout: float
) -> http.client.HTTPResponse:
    data = json.dumps(body).encode() if body is not None else None
    headers = {**engine_auth_headers(), **({"Content-Type": "application/json"} if data else {})}
    for attempt in (1, 2):  # a kept-alive connection may have been closed by the engine: retry once
        conn = None
        try:
            conn = _connection(timeout, replica)
            conn.request(method, path, body=data, headers=headers)
            return conn.getresponse()
        except (ConnectionError, http.client.HTTPException, OSError):
            if conn is not None:
                conn.close()
            _local.__dict__.get("conns", {}).pop(replica, None)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _refused(resp: http.client.HTTPResponse) -> Exception:
    """The error for a non-200 answer: the engine refusing a request is the request's fault (4xx)."""
    try:
        payload = json.loads(resp.read() or b"{}")
    except ValueError:
        payload = {}
    message = payload.get("error", f"engine answered {resp.status}")
    if resp.status == 401:
        return EngineError("The engine refused this web tier's secret: restart both with the same instance.")
    if 400 <= resp.status < 500:
        return RequestError(message, param=payload.get("field"), status=resp.status)
    return EngineError(message)


def _reply(data: bytes) -> object:
    """A JSON reply from the engine; anything else is an EngineReplyError."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise EngineReplyError("it is not JSON.") from None


def engine_complete(request: EngineRequest, timeout: float = 120.0) -> EngineResult:
    """The engine's answer to `request` (raises EngineReplyError when it is malformed)."""
    resp = _request("POST", "/complete", request.to_json(), timeout)
    if resp.status != 200:
        raise _refused(resp)
    return EngineResult.from_dict(_reply(resp.read()))


def engine_stream(request: EngineRequest, timeout: float = 120.0) -> Iterator[StreamDelta | StreamDone]:
    """The pieces of the first choice as they are generated, then the whole result.

    An error the engine reports mid-stream is raised as an EngineError; a malformed line as an
    EngineReplyError."""
    resp = _request("POST", "/complete", replace(request, stream=True).to_json(), timeout)
    if resp.status != 200:
        raise _refused(resp)
    for line in resp:
        if line.strip():
            yield stream_message_from_dict(_reply(line))


def engine_health(timeout: float = 2.0) -> dict:
    resp = _request("GET", "/health", None, timeout)
    if resp.status == 401:
        raise _refused(resp)
    return json.loads(resp.read() or b"{}")
