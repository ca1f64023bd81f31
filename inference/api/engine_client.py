"""The web tier's client of the engine process (loopback HTTP, one connection per thread)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

from django.conf import settings

from appliance.errors import EngineError

_local = threading.local()


def _connection(timeout: float) -> http.client.HTTPConnection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.sock is None:
        conn = http.client.HTTPConnection(settings.HEARTH_ENGINE_HOST, settings.HEARTH_ENGINE_PORT, timeout=timeout)
        conn.connect()
        # Small JSON answers: without NODELAY, Nagle + delayed ACK cost ~40 ms per request.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _local.conn = conn
    conn.timeout = timeout
    conn.sock.settimeout(timeout)
    return conn


def _request(method: str, path: str, body: dict | None, timeout: float) -> http.client.HTTPResponse:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    for attempt in (1, 2):  # a kept-alive connection may have been closed by the engine: retry once
        conn = None
        try:
            conn = _connection(timeout)
            conn.request(method, path, body=data, headers=headers)
            return conn.getresponse()
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            if conn is not None:
                conn.close()
            _local.conn = None
            if attempt == 2:
                raise EngineError(
                    "The Hearth engine is not reachable; start it with `python manage.py inference_serve`."
                ) from exc
    raise AssertionError("unreachable")


def engine_complete(body: dict, timeout: float = 120.0) -> dict:
    resp = _request("POST", "/complete", body, timeout)
    payload = json.loads(resp.read() or b"{}")
    if resp.status != 200:
        raise EngineError(payload.get("error", f"engine answered {resp.status}"))
    return payload


def engine_stream(body: dict, timeout: float = 120.0) -> Iterator[dict]:
    resp = _request("POST", "/complete", {**body, "stream": True}, timeout)
    if resp.status != 200:
        payload = json.loads(resp.read() or b"{}")
        raise EngineError(payload.get("error", f"engine answered {resp.status}"))
    for line in resp:
        if line.strip():
            yield json.loads(line)


def engine_health(timeout: float = 2.0) -> dict:
    resp = _request("GET", "/health", None, timeout)
    return json.loads(resp.read() or b"{}")
