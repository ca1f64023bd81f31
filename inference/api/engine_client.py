"""The web tier's client of the engine process (loopback HTTP, one connection per thread).

Every call carries the instance's shared secret: the engine answers nobody else.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace

from django.conf import settings

from appliance.engine_secret import engine_auth_headers
from appliance.errors import EngineError
from inference.api.errors import RequestError
from inference.engine.request import EngineRequest

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
    headers = {**engine_auth_headers(), **({"Content-Type": "application/json"} if data else {})}
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


def engine_complete(request: EngineRequest, timeout: float = 120.0) -> dict:
    resp = _request("POST", "/complete", request.to_json(), timeout)
    if resp.status != 200:
        raise _refused(resp)
    return json.loads(resp.read() or b"{}")


def engine_stream(request: EngineRequest, timeout: float = 120.0) -> Iterator[dict]:
    resp = _request("POST", "/complete", replace(request, stream=True).to_json(), timeout)
    if resp.status != 200:
        raise _refused(resp)
    for line in resp:
        if line.strip():
            yield json.loads(line)


def engine_health(timeout: float = 2.0) -> dict:
    resp = _request("GET", "/health", None, timeout)
    if resp.status == 401:
        raise _refused(resp)
    return json.loads(resp.read() or b"{}")
