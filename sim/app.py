"""The simulator over HTTP: a raw ASGI app (no framework, so that benchmarks measure the
fetcher, not the simulator) serving the hiscores paths plus a small `/_sim/` control API."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import msgspec

from shared.modes import MODE_BY_MODULE, GameMode
from shared.players import InvalidPlayerName, player_key
from shared.serving import serve_asgi
from sim.payload import to_csv, to_json
from sim.pins import PinBoard, PinError, parse_pin
from sim.population import DEFAULT_EPOCH, Population

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Clock = Callable[[], float]

JSON = b"application/json"
CSV = b"text/plain; charset=utf-8"
HTML = b"text/html; charset=utf-8"
NOT_FOUND_HTML = resources.files("sim").joinpath("static", "not_found.html").read_bytes()
MAX_PIN_BODY = 1 << 20
PLAYERS_PAGE_MAX = 10_000

_HISCORES_PATH = re.compile(r"/m=([^/]+)/index_lite\.(json|ws)")
_PIN_PATH = re.compile(r"/_sim/pin/(.+)")


class Reply(msgspec.Struct, frozen=True):
    status: int
    body: bytes = b""
    content_type: bytes = JSON


_NOT_FOUND = Reply(404, NOT_FOUND_HTML, HTML)
_NO_CONTENT = Reply(204)


def _json(status: int, value: Any) -> Reply:
    return Reply(status, msgspec.json.encode(value), JSON)


def _detail(status: int, detail: str) -> Reply:
    return _json(status, {"detail": detail})


class SimApp:
    """`await app(scope, receive, send)`; see create_app."""

    def __init__(self, population: Population, clock: Clock = time.time) -> None:
        self.population = population
        self.clock = clock
        self.pins = PinBoard()
        self.requests = 0
        self.by_status: Counter[int] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/_sim/"):
            reply = await self._control(scope, receive, path)
        else:
            reply = self._hiscores(scope, path)
            # Only hiscores traffic is counted: control calls would skew benchmark numbers.
            self.requests += 1
            self.by_status[reply.status] += 1
        await _send(send, reply)

    def _hiscores(self, scope: Scope, path: str) -> Reply:
        match = _HISCORES_PATH.fullmatch(path)
        if match is None or match[1] not in MODE_BY_MODULE:
            return _NOT_FOUND
        if scope["method"] != "GET":
            return _detail(405, "the hiscores answer GET only")
        module, fmt = match[1], match[2]
        names = _query(scope).get("player")
        if not names:
            return _NOT_FOUND  # Jagex answers garbage with its 404 page too
        try:
            key = player_key(names[0])
        except InvalidPlayerName:
            return _NOT_FOUND
        pin = self.pins.take(key, module)
        if pin is not None:
            return Reply(pin.status, pin.body, pin.content_type.encode("ascii"))
        player = self.population.find(names[0])
        if player is None or module not in player.boards:
            return _NOT_FOUND
        state = self.population.state_at(player, self.clock(), module)
        if fmt == "json":
            return Reply(200, to_json(state), JSON)
        return Reply(200, to_csv(state), CSV)

    async def _control(self, scope: Scope, receive: Receive, path: str) -> Reply:
        method = scope["method"]
        if path == "/_sim/health" and method == "GET":
            return _json(200, {"status": "ok", "players": self.population.size})
        if path == "/_sim/stats":
            return self._stats(method)
        if path == "/_sim/players" and method == "GET":
            return self._players(_query(scope))
        if path == "/_sim/pins" and method in ("GET", "DELETE"):
            if method == "GET":
                return _json(200, self.pins.counts())
            self.pins.clear_all()
            return _NO_CONTENT
        match = _PIN_PATH.fullmatch(path)
        if match is not None and method in ("POST", "DELETE"):
            return await self._pin(match[1], method, receive)
        return _detail(404, f"no simulator route {method} {path}")

    def _stats(self, method: str) -> Reply:
        if method == "DELETE":
            self.requests = 0
            self.by_status.clear()
            return _NO_CONTENT
        by_status = {str(status): n for status, n in sorted(self.by_status.items())}
        return _json(200, {"requests": self.requests, "by_status": by_status})

    def _players(self, query: dict[str, list[str]]) -> Reply:
        try:
            limit = min(int(query.get("limit", ["100"])[0]), PLAYERS_PAGE_MAX)
            offset = int(query.get("offset", ["0"])[0])
            active = _flag(query.get("active", [""])[0])
            account_type = query.get("account_type", [""])[0] or None
            wanted = GameMode(account_type) if account_type else None
        except ValueError as exc:
            return _detail(400, f"bad players query: {exc}")
        if limit < 0 or offset < 0:
            return _detail(400, "limit and offset must not be negative")
        return _json(200, self._page(limit, offset, active, wanted))

    def _page(
        self, limit: int, offset: int, active: bool | None, account_type: GameMode | None
    ) -> list[dict[str, Any]]:
        """Up to `limit` players from `offset` on (offset counts players before filtering)."""
        page: list[dict[str, Any]] = []
        players = self.population.players
        for index in range(offset, len(players)):
            if len(page) >= limit:
                break
            player = players[index]
            if active is not None and player.active != active:
                continue
            if account_type is not None and player.account_type != account_type:
                continue
            page.append(player.as_json())
        return page

    async def _pin(self, name: str, method: str, receive: Receive) -> Reply:
        try:
            key = player_key(name)
        except InvalidPlayerName as exc:
            return _detail(400, f"bad player name {name!r}: {exc}")
        if method == "DELETE":
            self.pins.clear(key)
            return _NO_CONTENT
        raw = await _read_body(receive)
        if raw is None:
            return _detail(413, f"a pin body is at most {MAX_PIN_BODY} bytes")
        try:
            self.pins.add(key, parse_pin(raw))
        except PinError as exc:
            return _detail(exc.status, exc.detail)
        return _NO_CONTENT


def create_app(population: Population, clock: Clock = time.time) -> SimApp:
    """The ASGI app serving `population`; `clock` (unix seconds) is injectable for tests."""
    return SimApp(population, clock)


def serve(
    players: int,
    port: int,
    host: str = "127.0.0.1",
    seed: int = 1,
    tick_s: float = 60.0,
    epoch: float = DEFAULT_EPOCH,
) -> None:
    """Serve a population under uvicorn until SIGINT or SIGTERM."""
    serve_asgi(create_app(Population(players, seed=seed, tick_s=tick_s, epoch=epoch)), host, port)


def _query(scope: Scope) -> dict[str, list[str]]:
    # latin-1 keeps every byte; parse_qs then undoes the %-escapes as UTF-8.
    return parse_qs(scope["query_string"].decode("latin-1"))


def _flag(value: str) -> bool | None:
    if value == "":
        return None
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"active must be true or false, got {value!r}")


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_PIN_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, reply: Reply) -> None:
    headers = [(b"content-length", str(len(reply.body)).encode("ascii"))]
    if reply.status != 204:
        headers.append((b"content-type", reply.content_type))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
