"""HTTP/1.1 for Hearth's front (appliance.proxy): read a request whole within its deadlines, write it
again for gunicorn, and relay a response as it comes. Strict on what it reads from clients, so that
gunicorn behind it never sees a request it could read differently."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TARGET = re.compile(rb"[\x21-\x7e]+")
HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")

# Never passed on: they describe one hop, not the request (RFC 9110 7.6.1), or ask for a switch of
# protocol this front does not make.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
# Set by a proxy, never believed from a client: dropped unless an operator's proxy stands in front
# (then it set them). X-Forwarded-Ssl/-Protocol are dropped always: gunicorn refuses a request whose
# scheme headers disagree, and Hearth's proxies send X-Forwarded-Proto only.
FORWARDED = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip", "forwarded"}
)
ALWAYS_DROPPED = frozenset({"x-forwarded-ssl", "x-forwarded-protocol"})
# What the front tells the application about the connection (appliance.wsgi.front_application).
PEER_HEADER, SCHEME_HEADER = "x-hearth-peer", "x-hearth-scheme"


class ClientError(Exception):
    """A request the front answers itself (status and a sentence), closing the connection after."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: list[tuple[str, str]]
    body: bytes = b""
    names: dict[str, list[str]] = field(default_factory=dict)  # lower-case name -> values

    def values(self, name: str) -> list[str]:
        return self.names.get(name, [])

    def connection_tokens(self) -> set[str]:
        return {t.strip().lower() for v in self.values("connection") for t in v.split(",") if t.strip()}

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 clients are served one request."""
        return self.version == "HTTP/1.1" and "close" not in self.connection_tokens()


def head_parse(head: bytes) -> Request:
    """A request line and header fields, as read up to (and with) the blank line."""
    lines = head[:-4].split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line or b"\x00" in line:
            raise ClientError(400, "A bare CR, LF or NUL in the request head.")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not TARGET.fullmatch(parts[1]):
        raise ClientError(400, "A malformed request line.")
    if parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ClientError(505, "Only HTTP/1.1 and HTTP/1.0 are served.")
    request = Request(parts[0].decode(), parts[1].decode(), parts[2].decode(), [])
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name):  # also refuses obsolete line folding
            raise ClientError(400, "A malformed header field.")
        pair = (name.decode(), value.strip(b" \t").decode("latin-1"))
        request.headers.append(pair)
        request.names.setdefault(pair[0].lower(), []).append(pair[1])
    return request


def body_length(request: Request, max_body: int) -> int | None:
    """The body's Content-Length, or None for a chunked body; refuses what could be read two ways."""
    encodings, lengths = request.values("transfer-encoding"), request.values("content-length")
    if encodings:
        if lengths or request.version != "HTTP/1.1":
            raise ClientError(400, "Transfer-Encoding with Content-Length, or in an HTTP/1.0 request.")
        if [e.strip().lower() for v in encodings for e in v.split(",")] != ["chunked"]:
            raise ClientError(501, "Only the chunked transfer coding is accepted.")
        return None
    values = {v.strip() for value in lengths for v in value.split(",")}
    if not values:
        return 0
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise ClientError(400, "An invalid Content-Length.")
    length = int(next(iter(values)))
    if length > max_body:
        raise ClientError(413, f"The request body is larger than {max_body} bytes.")
    return length


async def chunked_read(reader: asyncio.StreamReader, max_body: int) -> bytes:
    """A chunked body, decoded; its trailer fields are read and dropped."""
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size = line[:-2].split(b";", 1)[0].strip(b" \t")
        if not HEX.fullmatch(size):
            raise ClientError(400, "A malformed chunk size.")
        n = int(size, 16)
        if n == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        if len(body) + n > max_body:
            raise ClientError(413, f"The request body is larger than {max_body} bytes.")
        body += await reader.readexactly(n)
        if await reader.readexactly(2) != b"\r\n":
            raise ClientError(400, "A chunk longer than its size.")


def upstream_request(request: Request, *, peer: str, scheme: str, trust_forwarded: bool) -> bytes:
    """The request as gunicorn gets it: whole (a Content-Length, never chunked), without hop-by-hop
    fields, names with an underscore (gunicorn may map them onto SCRIPT_NAME and the like) or
    forwarding fields a client made up, with the front's own account of the connection."""
    dropped = (
        HOP_BY_HOP
        | request.connection_tokens()
        | ALWAYS_DROPPED
        | {PEER_HEADER, SCHEME_HEADER, "content-length"}
    )
    if not trust_forwarded:
        dropped |= FORWARDED
    lines = [f"{request.method} {request.target} {request.version}"]
    lines += [f"{n}: {v}" for n, v in request.headers if n.lower() not in dropped and "_" not in n]
    if request.body or request.values("content-length") or request.values("transfer-encoding"):
        lines.append(f"Content-Length: {len(request.body)}")
    lines += [f"X-Hearth-Peer: {peer}", f"X-Hearth-Scheme: {scheme}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


@dataclass
class ResponseHead:
    status: int
    head: bytes  # status line and fields, hop-by-hop ones removed, without the blank line
    length: int | None  # Content-Length; None: chunked or until the connection closes
    chunked: bool
    close: bool  # gunicorn closes the connection after it


def response_head_parse(raw: bytes) -> ResponseHead:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    kept, length, chunked, tokens = [lines[0]], None, False, set()
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lower, value = name.strip().lower(), value.strip()
        if lower == b"connection":
            tokens |= {t.strip() for t in value.lower().split(b",")}
            continue
        if lower == b"keep-alive":
            continue
        if lower == b"content-length":
            length = int(value)
        elif lower == b"transfer-encoding":
            chunked = value.lower() == b"chunked"
        kept.append(line)
    close = b"close" in tokens or (parts[0] == b"HTTP/1.0" and b"keep-alive" not in tokens)
    return ResponseHead(int(parts[1]), b"\r\n".join(kept), length, chunked, close)


def error_response(status: int, message: str) -> bytes:
    """The front's own answer, in the API's error shape, closing the connection."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        + ("Retry-After: 5\r\n" if status == 503 else "")
        + "\r\n"
    )
    return head.encode() + body
