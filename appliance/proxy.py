"""Hearth's front: the web tier's listening socket, in front of gunicorn.

gunicorn's threaded worker gives a connection one of its threads as soon as the connection's first
bytes arrive, and reads the rest of the request head in that thread with no deadline: a few dozen
clients sending one header line every few seconds held every thread, and the admin and completions
timed out. The front reads each request whole in asyncio, where a waiting connection costs a
coroutine, not a thread (the head within `head_s`, the body within a deadline that grows with its
size, both bounded in size), and hands gunicorn only complete requests, over a unix socket in a
private directory. Responses are relayed as they come, so streamed completions stay streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.proxy_http import (
    ClientError,
    Request,
    body_length,
    chunked_read,
    error_response,
    head_parse,
    response_head_parse,
    upstream_request,
)

logger = logging.getLogger(__name__)

# gunicorn closes a kept-alive connection after its --keep-alive (75 s): the front reuses one only
# well within that, so the two seldom race over a connection one of them is closing.
UPSTREAM_REUSE_S = 50.0
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_BUFFER = 1 << 20  # response bytes held for a client before waiting for it to read
READ_CHUNK = 64 << 10


@dataclass(frozen=True)
class FrontLimits:
    """How long the front waits for a client and how much it holds for one."""

    head_s: float = 10.0  # from a request's first byte to the end of its head (and a TLS handshake)
    idle_s: float = 75.0  # a kept-alive connection between two requests (an IDE's, between keystrokes)
    body_s: float = 30.0  # a body's deadline: this, plus a second for every `body_rate` bytes
    body_rate: int = 256 << 10
    max_head: int = 64 << 10
    max_body: int = 16 << 20  # the admin's blocked-code upload (10 MB) with its form
    send_s: float = 60.0  # a client that reads none of its response for this long is dropped
    upstream_s: float = 300.0  # gunicorn's own --timeout
    grace_s: float = 5.0  # on SIGTERM, for the requests in flight
    max_connections: int = 0  # 0: as many as the open-files limit allows


class Closed(Exception):
    """The client or gunicorn went away: close the connection, nothing to answer."""


class UpstreamPool:
    """Kept connections to gunicorn, shared by all clients (a request names its client in a header):
    a client's first request needs no new connection, and gunicorn holds one per request in flight."""

    MAX_IDLE = 64

    def __init__(self, path: str, limit: int):
        self.path, self.limit = path, limit
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """A connection, and whether it was kept from an earlier request (the most recent first)."""
        now = time.monotonic()
        while self.idle:
            reader, writer, used = self.idle.pop()
            if now - used < UPSTREAM_REUSE_S and not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.transport.abort()
        reader, writer = await asyncio.open_unix_connection(self.path, limit=self.limit)
        return reader, writer, False

    def put(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        now = time.monotonic()
        self.idle.append((reader, writer, now))
        while len(self.idle) > self.MAX_IDLE or now - self.idle[0][2] >= UPSTREAM_REUSE_S:
            self.idle.pop(0)[1].transport.abort()

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.transport.abort()
        self.idle.clear()


def listen(bind: str, port: int) -> socket.socket:
    """The listening socket on HEARTH_WEB_BIND (an address, bracketed or not; empty: every address)."""
    host = bind.strip("[]")
    if host in ("", "0.0.0.0"):
        return socket.create_server(("0.0.0.0", port), backlog=2048)
    if ":" in host:
        dual = host == "::" and socket.has_dualstack_ipv6()
        return socket.create_server((host, port), family=socket.AF_INET6, backlog=2048, dualstack_ipv6=dual)
    return socket.create_server((host, port), backlog=2048)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def connections_allowed() -> int:
    """Client connections the front may hold: each can hold a second descriptor (to gunicorn), so half
    the open-files limit, raised to its hard limit first (systemd's soft limit is 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return max(16, (soft - 64) // 2)


class Front:
    """Client connections on one listening socket, each relayed to gunicorn's unix socket."""

    def __init__(
        self,
        *,
        upstream: str,
        limits: FrontLimits = FrontLimits(),
        tls: ssl.SSLContext | None = None,
        trust_forwarded: bool = False,
    ):
        self.pool = UpstreamPool(upstream, limits.max_head)
        self.limits = limits
        self.tls = tls
        self.scheme = "https" if tls else "http"
        # Behind an operator's proxy (HEARTH_BEHIND_PROXY) its X-Forwarded-* fields pass through.
        self.trust_forwarded = trust_forwarded
        self.max_connections = limits.max_connections or connections_allowed()
        self.tasks: set[asyncio.Task] = set()
        self.idle: set[asyncio.StreamWriter] = set()
        self.stopping = False
        self._refused_at = 0.0

    async def serve(self, sock: socket.socket, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then finish the requests in flight (at most `grace_s`)."""
        server = await asyncio.start_server(
            self._client,
            sock=sock,
            ssl=self.tls,
            ssl_handshake_timeout=self.limits.head_s if self.tls else None,
            limit=self.limits.max_head,
        )
        try:
            await stop.wait()
        finally:
            self.stopping = True
            server.close()
            for writer in list(self.idle):
                writer.close()
            if self.tasks:
                _, late = await asyncio.wait(self.tasks, timeout=self.limits.grace_s)
                for task in late:
                    task.cancel()
                if late:
                    await asyncio.wait(late, timeout=1.0)
            self.pool.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.tasks) >= self.max_connections or self.stopping:
            writer.transport.abort()
            if not self.stopping and time.monotonic() - self._refused_at > 60:
                self._refused_at = time.monotonic()
                logger.warning("front: %d connections open, refusing new ones", len(self.tasks))
            return
        task = asyncio.current_task()
        self.tasks.add(task)
        connection = Connection(self, reader, writer)
        try:
            await connection.run()
        except (Closed, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Exception:
            logger.exception("front: a connection from %s failed", connection.peer)
        finally:
            self.tasks.discard(task)
            self.idle.discard(writer)
            connection.close()


class Connection:
    """One client connection: requests read whole, one at a time, each relayed to gunicorn."""

    def __init__(self, front: Front, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.front, self.limits = front, front.limits
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER)
        self.up_reader: asyncio.StreamReader | None = None  # gunicorn, for the request in flight
        self.up_writer: asyncio.StreamWriter | None = None
        self.pending = b""  # a response head waiting to go out with the first bytes of its body

    async def run(self) -> None:
        while not self.front.stopping:
            try:
                head = await self._head_read()
                if head is None:
                    return
                request = head_parse(head)
                request.body = await self._body_read(request)
            except ClientError as exc:
                self.writer.write(error_response(exc.status, str(exc)))
                return
            if not await self._forward(request):
                return

    async def _head_read(self) -> bytes | None:
        """A request head; None when the client closed or stayed silent for `idle_s`."""
        self.front.idle.add(self.writer)  # closed at once when the front stops
        try:
            async with asyncio.timeout(self.limits.idle_s):
                first = await self.reader.readexactly(1)
                while first in (b"\r", b"\n"):  # empty lines before a request are ignored (RFC 9112 2.2)
                    first = await self.reader.readexactly(1)
        except (TimeoutError, asyncio.IncompleteReadError):
            return None
        finally:
            self.front.idle.discard(self.writer)
        try:
            async with asyncio.timeout(self.limits.head_s):
                return first + await self.reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            logger.debug("front: %s sent no whole request head in %.0f s", self.peer, self.limits.head_s)
            raise ClientError(408, "The request head did not arrive in time.") from None
        except asyncio.LimitOverrunError:
            raise ClientError(431, f"The request head is larger than {self.limits.max_head} bytes.") from None
        except asyncio.IncompleteReadError:
            return None

    async def _body_read(self, request: Request) -> bytes:
        length = body_length(request, self.limits.max_body)
        if length == 0:
            return b""
        if request.version == "HTTP/1.1" and any(
            "100-continue" in v.lower() for v in request.values("expect")
        ):
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        deadline = self.limits.body_s + (length or self.limits.max_body) / self.limits.body_rate
        try:
            async with asyncio.timeout(deadline):
                if length is None:
                    return await chunked_read(self.reader, self.limits.max_body)
                return await self.reader.readexactly(length)
        except TimeoutError:
            raise ClientError(408, "The request body did not arrive in time.") from None
        except asyncio.LimitOverrunError:
            raise ClientError(400, "A malformed chunked body.") from None
        except asyncio.IncompleteReadError:
            raise Closed from None

    async def _forward(self, request: Request) -> bool:
        """Relay `request` and its response; whether the client's connection stays open."""
        data = upstream_request(
            request, peer=self.peer, scheme=self.front.scheme, trust_forwarded=self.front.trust_forwarded
        )
        while True:
            try:
                self.up_reader, self.up_writer, reused = await self.front.pool.get()
            except OSError:
                self.writer.write(error_response(503, "The web tier is starting or stopping: try again."))
                return False
            try:
                async with asyncio.timeout(self.limits.upstream_s):
                    self.up_writer.write(data)
                    await self.up_writer.drain()
                    raw = await self.up_reader.readuntil(b"\r\n\r\n")
                    head = response_head_parse(raw)
                    while 100 <= head.status < 200 and head.status != 101:  # 103 Early Hints
                        if request.version == "HTTP/1.1":
                            self.writer.write(head.head + b"\r\n\r\n")
                        head = response_head_parse(await self.up_reader.readuntil(b"\r\n\r\n"))
                break
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._upstream_close()
                # A kept connection closed before a byte of answer (its gunicorn worker stopped): a
                # request that may be repeated goes again on another, as nginx would.
                if reused and not getattr(exc, "partial", b"") and request.method in IDEMPOTENT:
                    continue
                return self._bad_gateway("gunicorn closed the connection")
            except (TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
                self._upstream_close()
                return self._bad_gateway(str(exc) or type(exc).__name__)
        if head.status == 101:
            self._upstream_close()
            return self._bad_gateway("gunicorn switched protocols")

        no_body = request.method == "HEAD" or head.status in (204, 304)
        until_close = not no_body and head.length is None and not head.chunked
        keep_client = request.keep_alive and not until_close and not self.front.stopping
        self.pending = head.head + (b"\r\n\r\n" if keep_client else b"\r\nConnection: close\r\n\r\n")
        try:
            if no_body:
                await self._send(b"")
            elif head.length is not None:
                await self._relay_exact(head.length)
            elif head.chunked:
                await self._relay_chunked()
            else:
                await self._relay_until_close()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self._upstream_close()
            raise Closed from None  # the response is cut: only closing tells the client
        except (Closed, ConnectionError):
            self._upstream_close()  # gunicorn sees its client gone and stops the work
            raise Closed from None
        if head.close or until_close:
            self._upstream_close()
        else:
            self.front.pool.put(self.up_reader, self.up_writer)
            self.up_reader = self.up_writer = None
        return keep_client

    def _bad_gateway(self, why: str) -> bool:
        logger.warning("front: no answer from gunicorn for %s: %s", self.peer, why)
        self.writer.write(error_response(502, "The web tier did not answer."))
        return False

    def _upstream_close(self) -> None:
        if self.up_writer is not None:
            self.up_writer.transport.abort()
        self.up_reader = self.up_writer = None

    async def _read(self, n: int) -> bytes:
        async with asyncio.timeout(self.limits.upstream_s):
            data = await self.up_reader.read(n)
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        return data

    async def _line(self) -> bytes:
        async with asyncio.timeout(self.limits.upstream_s):
            return await self.up_reader.readuntil(b"\r\n")

    async def _send(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise Closed
        self.writer.write(self.pending + data)
        self.pending = b""
        if self.writer.transport.get_write_buffer_size() > WRITE_BUFFER:
            try:
                async with asyncio.timeout(self.limits.send_s):
                    await self.writer.drain()
            except TimeoutError:
                raise Closed from None

    async def _relay_exact(self, n: int) -> None:
        if n == 0:
            await self._send(b"")
        while n > 0:
            data = await self._read(min(n, READ_CHUNK))
            n -= len(data)
            await self._send(data)

    async def _relay_chunked(self) -> None:
        """Chunks passed on as they are (a streamed completion's events), each in one write."""
        while True:
            line = await self._line()
            size = int(line[:-2].split(b";", 1)[0], 16)
            if size == 0:
                trailer = line
                while (more := await self._line()) != b"\r\n":
                    trailer += more
                await self._send(trailer + more)
                return
            chunk, remaining = [line], size + 2
            while remaining:
                data = await self._read(min(remaining, READ_CHUNK))
                remaining -= len(data)
                chunk.append(data)
                if remaining and sum(map(len, chunk)) >= READ_CHUNK:
                    await self._send(b"".join(chunk))
                    chunk = []
            await self._send(b"".join(chunk))

    async def _relay_until_close(self) -> None:
        while data := await self.up_reader.read(READ_CHUNK):
            await self._send(data)

    def close(self) -> None:
        self._upstream_close()
        if not self.writer.is_closing():
            self.writer.close()  # sends what is buffered (an error answer), then closes


def front_run(
    *,
    sock: socket.socket,
    upstream: str,
    tls: ssl.SSLContext | None,
    trust_forwarded: bool,
    alive: Callable[[], bool],
    limits: FrontLimits = FrontLimits(),
) -> bool:
    """Serve on `sock` until SIGTERM or SIGINT (then True), or until `alive()` turns false (gunicorn
    died: False)."""
    signalled = False

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            nonlocal signalled
            signalled = True
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)

        async def watch() -> None:
            while alive():
                await asyncio.sleep(1.0)
            stop.set()

        watcher = asyncio.create_task(watch())
        front = Front(upstream=upstream, limits=limits, tls=tls, trust_forwarded=trust_forwarded)
        try:
            await front.serve(sock, stop)
        finally:
            watcher.cancel()

    asyncio.run(main())
    return signalled
