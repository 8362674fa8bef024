"""What goes over the wire: replies, the bodies of each fault, and the two faults that are not
a reply at all (a late answer, a connection reset)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from importlib import resources
from typing import Any

import msgspec

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
CSV = b"text/plain; charset=utf-8"
HTML = b"text/html; charset=utf-8"
_STATIC = resources.files("sim").joinpath("static")
NOT_FOUND_HTML = _STATIC.joinpath("not_found.html").read_bytes()
OUTAGE_HTML = _STATIC.joinpath("outage_200.html").read_bytes()
RESET_WAIT_S = 1.0


class Reply(msgspec.Struct, frozen=True):
    status: int
    body: bytes = b""
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


NOT_FOUND = Reply(404, NOT_FOUND_HTML, HTML)
NO_CONTENT = Reply(204)
OUTAGE = Reply(200, OUTAGE_HTML, HTML)


class ConnectionReset(ConnectionResetError):
    """Raised for a `reset` fault where there is no socket to reset (an in-process transport)."""


def json_reply(status: int, value: Any) -> Reply:
    return Reply(status, msgspec.json.encode(value), JSON)


def detail(status: int, text: str) -> Reply:
    return json_reply(status, {"detail": text})


def error_page(status: int, retry_after_s: int | None = None) -> Reply:
    """A bare HTML error page, as a front end or gateway answers (the real markup is unknown)."""
    phrase = f"{status} {HTTPStatus(status).phrase}"
    body = f"<html><head><title>{phrase}</title></head><body><h1>{phrase}</h1></body></html>\n"
    headers = ()
    if retry_after_s is not None:
        headers = ((b"retry-after", str(retry_after_s).encode("ascii")),)
    return Reply(status, body.encode("ascii"), HTML, headers)


def truncated(reply: Reply) -> Reply:
    """The payload cut in the middle, labelled and sized as if that were all of it."""
    return msgspec.structs.replace(reply, body=reply.body[: len(reply.body) // 2])


def wrong_type(reply: Reply) -> Reply:
    """The complete, valid payload labelled text/html, as a misconfigured front end does: a
    client must read the body, not trust the label."""
    return msgspec.structs.replace(reply, content_type=HTML)


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [(b"content-length", str(len(reply.body)).encode("ascii")), *reply.headers]
    if reply.status != 204:
        headers.append((b"content-type", reply.content_type))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def linger(receive: Receive, seconds: float) -> bool:
    """Wait `seconds` before answering; False if the client hung up meanwhile (no answer is
    then sent, and a server shutting down is not held up by a client that is gone)."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return True
    return False


async def reset_connection(receive: Receive) -> None:
    """Drop the TCP connection under this request with an RST and no HTTP answer at all.

    ASGI has no message for that, so this reaches for the transport behind uvicorn's request
    cycle (`receive` is its bound method); without one, ConnectionReset is raised instead."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise ConnectionReset("simulated connection reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # linger 0: close() sends RST, not FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let the server see the disconnect, or it would log a missing response and try a 500.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(RESET_WAIT_S):
            while (await receive())["type"] != "http.disconnect":
                pass
