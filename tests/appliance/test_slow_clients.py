"""Slow or silent clients cannot stall the web tier. Against the web tier as `serve` starts it: dozens
of connections that dribble a request head (one header line every couple of seconds) and dozens that
say nothing, and still an honest request (the admin's login page, a completion from the micro model)
is answered within a second, again and again while they go on."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import pytest
import requests

from appliance.processes import Services, wait_http
from appliance.proxy import FrontLimits
from tests.appliance.test_processes import process_group
from tests.conftest import child_env
from tests.inference.conftest import engine_live, free_port  # noqa: F401 (engine_live: a fixture)

SLOW = 64
IDLE = 64
DRIBBLE_S = 2.0  # each slow connection sends one more header line this often
ROUNDS = 4  # honest requests, one round every DRIBBLE_S while the slow clients go on
ANSWER_S = 1.0


@pytest.fixture
def web_tier(engine_live, settings, monkeypatch):  # noqa: F811
    """The web tier on a free loopback port, started as `serve` starts it, sharing this test's
    database and instance directory, its engine the micro model in this process."""
    env = child_env(settings, HEARTH_ENGINE_PORT=str(settings.HEARTH_ENGINE_PORT))
    for name in ("HEARTH_HOME", "HEARTH_DATABASE", "HEARTH_ENGINE_PORT"):
        monkeypatch.setenv(name, env[name])
    port = free_port()
    services = Services()
    web = services.start_web(port)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=90, services=services)
        yield port
    finally:
        services.stop()
    # The front and gunicorn share a process group: stopping the service stopped every process of it.
    deadline = time.monotonic() + 15
    while process_group(web.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_group(web.pid), "processes of the web tier outlived it"


class Dribblers:
    """Connections that begin a request and add one header line every DRIBBLE_S, never finishing it."""

    def __init__(self, port: int, count: int):
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        for sock in self.socks:
            sock.sendall(b"GET /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def _dribble(self) -> None:
        line = 0
        while not self.stop.wait(DRIBBLE_S):
            line += 1
            for sock in self.socks:
                try:
                    sock.sendall(b"X-Slow-%d: x\r\n" % line)
                except OSError:
                    pass  # closed by the server: that is its right

    def wait_closed(self, timeout: float) -> bool:
        """Whether the server closed every one of them within `timeout` (an answer, then EOF)."""
        deadline = time.monotonic() + timeout
        for sock in self.socks:
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    if not sock.recv(65536):
                        break
                except TimeoutError:
                    return False
                except OSError:
                    break  # reset: closed too
        return True

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for sock in self.socks:
            sock.close()


def _timed(call) -> tuple[str, float]:
    started = time.monotonic()
    try:
        outcome = str(call().status_code)
    except requests.RequestException as exc:
        outcome = type(exc).__name__
    return outcome, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_an_honest_request_is_answered_while_dozens_of_clients_dribble_or_idle(web_tier):
    from inference.auth import token_create

    url = f"http://127.0.0.1:{web_tier}"
    raw = token_create(username="dev")[1]

    def login_page():
        return requests.get(f"{url}/admin/login/", timeout=ANSWER_S)

    def completion():
        return requests.post(
            f"{url}/v1/completions",
            json={"prompt": "def parse(text):\n    ", "max_tokens": 4},
            headers={"Authorization": f"Bearer {raw}"},
            timeout=ANSWER_S,
        )

    # Warm: each web worker opens its database and engine connections on its first requests.
    for _ in range(4):
        assert login_page().status_code == 200 and completion().status_code == 200
    # A streamed completion comes through the front as events, chunk by chunk.
    streamed = requests.post(
        f"{url}/v1/completions",
        json={"prompt": "def parse(text):\n    ", "max_tokens": 4, "stream": True},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=10,
        stream=True,
    )
    events = [line for line in streamed.iter_lines() if line.startswith(b"data: ")]
    assert streamed.headers["Transfer-Encoding"] == "chunked" and events[-1] == b"data: [DONE]", events

    idle = [socket.create_connection(("127.0.0.1", web_tier), timeout=5) for _ in range(IDLE)]
    slow = Dribblers(web_tier, SLOW)
    try:
        answers = []
        for _ in range(ROUNDS):
            time.sleep(DRIBBLE_S / 2)
            answers += [("login", *_timed(login_page)), ("completion", *_timed(completion))]
        late = [a for a in answers if a[1] != "200" or a[2] > ANSWER_S]
        assert not late, f"answers ({len(late)} of {len(answers)} late or failed): {answers}"
        print("answers", [(what, outcome, round(s, 3)) for what, outcome, s in answers])
        # Nor do they pile up: a head not whole within the front's deadline closes its connection.
        assert slow.wait_closed(timeout=FrontLimits().head_s + 5), (
            "slow connections outlived the head deadline"
        )
    finally:
        slow.close()
        for sock in idle:
            sock.close()


# --- the front alone, in this process, in front of a scripted gunicorn --------------------------------


class FrontHarness:
    """A Front on a free loopback port, in a thread with its own event loop, relaying to a stand-in
    for gunicorn on a unix socket that records what it gets and answers 200 (/stream: two chunks,
    the second once `release()` is called)."""

    def __init__(self, tmp_path, limits: FrontLimits, trust_forwarded: bool = False):
        from appliance.proxy import listen

        self.limits, self.trust_forwarded = limits, trust_forwarded
        self.upstream = str(tmp_path / "gunicorn.sock")
        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[bytes, bytes]] = []
        self.upstream_connections = 0
        self.handlers: list[asyncio.Task] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(started),))
        self.thread.start()
        assert started.wait(10)

    async def _main(self, started: threading.Event) -> None:
        from appliance.proxy import Front

        self.stop, self.released = asyncio.Event(), asyncio.Event()
        server = await asyncio.start_unix_server(self._gunicorn, path=self.upstream)
        front = Front(upstream=self.upstream, limits=self.limits, trust_forwarded=self.trust_forwarded)
        started.set()
        await front.serve(self.sock, self.stop)
        server.close()
        for writer in self.writers:
            writer.close()  # its handler reads EOF and returns
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _gunicorn(self, reader, writer) -> None:
        self.upstream_connections += 1
        self.handlers.append(asyncio.current_task())
        self.writers.append(writer)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                self.requests.append((head, body))
                if head.startswith(b"GET /stream "):
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
                    await self.released.wait()
                    writer.write(b"7\r\nsecond\n\r\n0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self.released.set)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=15)
        self.loop.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while more := sock.recv(65536):
        data += more
    return data


@pytest.fixture
def front(tmp_path):
    harness = FrontHarness(tmp_path, FrontLimits(head_s=0.5, body_s=0.5, max_body=1000))
    yield harness
    harness.close()


def test_a_head_or_body_that_does_not_arrive_in_time_closes_the_connection(front):
    for partial in (
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
    ):
        sock = front.connect()
        started = time.monotonic()
        sock.sendall(partial)
        answer = _read_to_eof(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 3
    assert front.requests == []  # gunicorn never saw them


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", b"413"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"501"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n Folded: y\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 70000 + b"\r\n\r\n", b"431"),
    ],
)
def test_requests_gunicorn_could_read_another_way_are_refused_at_the_front(front, request_head, status):
    sock = front.connect()
    sock.sendall(request_head)
    assert _read_to_eof(sock).startswith(b"HTTP/1.1 " + status + b" ")
    assert front.requests == []


def test_gunicorn_gets_the_whole_request_and_the_fronts_account_of_the_client(front):
    sock = front.connect()
    sock.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
        b"X-Hearth-Peer: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
        b"Script_Name: /elsewhere\r\n\r\n"
    )
    assert _read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    for piece in (b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"):
        sock.sendall(piece)
        time.sleep(0.1)
    assert _read_until(sock, b"ok").endswith(b"\r\n\r\nok")
    (head, body), *_ = front.requests
    lines = head.decode().split("\r\n")
    assert body == b"hello world" and "Content-Length: 11" in lines
    assert "X-Hearth-Peer: 127.0.0.1" in lines and "X-Hearth-Scheme: http" in lines
    assert not [line for line in lines if "6.6.6.6" in line or "https" in line or "elsewhere" in line]
    assert not [line for line in lines if line.lower().startswith(("transfer-encoding", "expect"))]


def test_behind_an_operators_proxy_its_forwarding_fields_pass(tmp_path):
    harness = FrontHarness(tmp_path, FrontLimits(), trust_forwarded=True)
    try:
        sock = harness.connect()
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n"
            b"X-Hearth-Peer: 6.6.6.6\r\nConnection: close\r\n\r\n"
        )
        assert _read_to_eof(sock).endswith(b"ok")
        lines = harness.requests[0][0].decode().split("\r\n")
        assert "X-Forwarded-For: 10.1.2.3" in lines and "X-Forwarded-Proto: https" in lines
        assert "X-Hearth-Peer: 127.0.0.1" in lines and "X-Hearth-Peer: 6.6.6.6" not in lines
    finally:
        harness.close()


def test_a_streamed_response_is_relayed_as_it_comes_and_connections_are_kept(front):
    sock = front.connect()
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    first = _read_until(sock, b"first\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"second" not in first  # before the rest exists
    front.release()
    assert _read_until(sock, b"0\r\n\r\n").endswith(b"7\r\nsecond\n\r\n0\r\n\r\n")
    for _ in range(3):  # the same client connection, and the same connection to gunicorn
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_until(sock, b"ok").endswith(b"ok")
    other = front.connect()  # another client: still the kept connection to gunicorn
    other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = _read_to_eof(other)
    assert b"Connection: close\r\n" in answer and answer.endswith(b"ok")
    assert len(front.requests) == 5 and front.upstream_connections == 1


def test_the_application_behind_the_front_takes_the_client_from_the_front(monkeypatch):
    from appliance import wsgi

    seen = {}
    monkeypatch.setattr(wsgi, "application", lambda environ, start_response: seen.update(environ))
    environ = {"REMOTE_ADDR": "", "wsgi.url_scheme": "http"}
    environ |= {"HTTP_X_HEARTH_PEER": "10.1.2.3", "HTTP_X_HEARTH_SCHEME": "https"}
    wsgi.front_application(environ, None)
    assert seen == {"REMOTE_ADDR": "10.1.2.3", "wsgi.url_scheme": "https"}
