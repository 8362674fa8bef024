"""The simulator over HTTP: a raw ASGI app (no framework, so that benchmarks measure the
fetcher, not the simulator) serving the hiscores paths plus a small `/_sim/` control API.

A hiscores lookup is answered, in this order, by: a pin queued for the player, an outage
window, a fault for the name's prefix, a fault drawn at the configured rates, and otherwise the
synthetic payload (after any layout change)."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

from shared.modes import MODE_BY_MODULE
from shared.players import InvalidPlayerName, player_key
from shared.serving import serve_asgi
from sim.control import control, query
from sim.faults import NO_FAULTS, STATUS_FAULTS, FaultBoard, FaultConfig, build_faults
from sim.pins import PinBoard
from sim.population import DEFAULT_EPOCH, Population
from sim.replies import (
    CSV,
    JSON,
    NOT_FOUND,
    NOT_FOUND_HTML,
    OUTAGE,
    Receive,
    Reply,
    Send,
    detail,
    error_page,
    linger,
    reset_connection,
    send_reply,
    truncated,
    wrong_type,
)

__all__ = ["NOT_FOUND_HTML", "SimApp", "create_app", "serve"]

Scope = MutableMapping[str, Any]
Clock = Callable[[], float]

_HISCORES_PATH = re.compile(r"/m=([^/]+)/index_lite\.(json|ws)")


class Lookup(NamedTuple):
    module: str
    fmt: str  # "json" or "csv"
    name: str
    key: str


class SimApp:
    """`await app(scope, receive, send)`; see create_app."""

    def __init__(
        self, population: Population, clock: Clock = time.time, faults: FaultConfig = NO_FAULTS
    ) -> None:
        self.population = population
        self._source = clock
        self.frozen_at: float | None = None  # PUT /_sim/clock: time stands still (no progress)
        self.pins = PinBoard()
        self.faults = FaultBoard(population.seed, faults, clock())
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.by_fault: Counter[str] = Counter()
        # Lookups being answered now, per player, and the most seen at once: how a test sees
        # that a player never has two fetches in flight, and that a fetcher keeps to its limit.
        self.open = 0
        self.open_by_player: Counter[str] = Counter()
        self.most_open = 0
        self.most_open_per_player = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/_sim/"):
            await send_reply(send, await control(self, scope, receive, path))
            return
        # Only hiscores traffic is counted: control calls would skew benchmark numbers.
        self.requests += 1
        lookup = _lookup(scope, path)
        if isinstance(lookup, Reply):
            await self._answer(send, lookup)
            return
        self.open += 1
        self.open_by_player[lookup.key] += 1
        self.most_open = max(self.most_open, self.open)
        self.most_open_per_player = max(self.most_open_per_player, self.open_by_player[lookup.key])
        try:
            await self._hiscores(lookup, receive, send)
        finally:
            self.open -= 1
            self.open_by_player[lookup.key] -= 1
            if not self.open_by_player[lookup.key]:
                del self.open_by_player[lookup.key]

    async def _hiscores(self, lookup: Lookup, receive: Receive, send: Send) -> None:
        pin = self.pins.take(lookup.key, lookup.module)
        if pin is not None:
            await self._answer(send, Reply(pin.status, pin.body, pin.content_type.encode()))
            return
        fault = self.faults.pick(lookup.key, self.clock())
        if fault is None:
            await self._answer(send, self.synthetic(lookup))
        else:
            await self._fault(fault, lookup, receive, send)

    def synthetic(self, lookup: Lookup) -> Reply:
        """The answer without pins or faults: the player's payload, or the 404 page."""
        player = self.population.find_key(lookup.key)
        if player is None:
            return NOT_FOUND
        body = self.population.payload(
            player, self.clock(), lookup.module, lookup.fmt, self.faults.layout
        )
        if body is None:
            return NOT_FOUND
        return Reply(200, body, JSON if lookup.fmt == "json" else CSV)

    async def _fault(self, fault: str, lookup: Lookup, receive: Receive, send: Send) -> None:
        config = self.faults.config
        if fault == "reset":
            self.by_fault[fault] += 1
            await reset_connection(receive)
            return
        if fault == "slow":
            self.by_fault[fault] += 1
            if await linger(receive, config.slow_s):
                await self._answer(send, self.synthetic(lookup))
            return
        if fault in STATUS_FAULTS:
            status = int(fault)
            reply = NOT_FOUND if status == 404 else error_page(status, _retry_after(fault, config))
        elif fault == "html200":
            reply = OUTAGE
        else:
            reply = self.synthetic(lookup)
            if reply.status != 200:
                await self._answer(send, reply)  # nothing to garble: a plain 404
                return
            reply = truncated(reply) if fault == "truncated" else wrong_type(reply)
        self.by_fault[fault] += 1
        await self._answer(send, reply)

    async def _answer(self, send: Send, reply: Reply) -> None:
        self.by_status[reply.status] += 1
        await send_reply(send, reply)

    def clock(self) -> float:
        """Now for the population: the source clock, or the instant it was frozen at."""
        return self._source() if self.frozen_at is None else self.frozen_at

    def freeze(self, frozen: bool) -> None:
        """Stop time (every later answer shows the payloads of this instant) or let it go on;
        while frozen, progress is not lost but deferred: unfreezing jumps to the source time."""
        if not frozen:
            self.frozen_at = None
        elif self.frozen_at is None:
            self.frozen_at = self._source()

    def set_faults(self, config: FaultConfig) -> None:
        self.faults.set(config, self.clock())

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "faults": dict(sorted(self.by_fault.items())),
            "outage_now": self.faults.outage_now(self.clock()),
            "most_in_flight": self.most_open,
            "most_in_flight_per_player": self.most_open_per_player,
        }

    def clear_stats(self) -> None:
        self.requests = 0
        self.by_status.clear()
        self.by_fault.clear()
        self.most_open = self.open
        self.most_open_per_player = max(self.open_by_player.values(), default=0)


def _retry_after(fault: str, config: FaultConfig) -> int | None:
    return config.retry_after_s if fault == "429" else None


def _lookup(scope: Scope, path: str) -> Lookup | Reply:
    match = _HISCORES_PATH.fullmatch(path)
    if match is None or match[1] not in MODE_BY_MODULE:
        return NOT_FOUND
    if scope["method"] != "GET":
        return detail(405, "the hiscores answer GET only")
    name = _player_param(scope["query_string"])
    if not name:
        return NOT_FOUND  # Jagex answers garbage with its 404 page too
    try:
        key = player_key(name)
    except InvalidPlayerName:
        return NOT_FOUND
    return Lookup(match[1], "json" if match[2] == "json" else "csv", name, key)


def _player_param(raw: bytes) -> str | None:
    # The usual `player=...` alone is read directly: parse_qs is a good part of a request's cost.
    if raw.startswith(b"player=") and b"&" not in raw:
        return unquote_plus(raw[7:].decode("latin-1")) or None
    names = query({"query_string": raw}).get("player")
    return names[0] if names else None


def create_app(
    population: Population,
    clock: Clock = time.time,
    faults: FaultConfig | Mapping[str, Any] | None = None,
) -> SimApp:
    """The ASGI app serving `population`; `clock` (unix seconds) is injectable for tests, and
    `faults` is a FaultConfig or its JSON shape (see sim.faults)."""
    return SimApp(population, clock, build_faults(faults))


def serve(
    players: int,
    port: int,
    host: str = "127.0.0.1",
    seed: int = 1,
    tick_s: float = 60.0,
    epoch: float = DEFAULT_EPOCH,
    *,
    faults: FaultConfig | Mapping[str, Any] | str | None = None,
    fault_rates: Mapping[str, float] | None = None,
    fault_prefixes: Mapping[str, str] | None = None,
    retry_after_s: int | None = None,
    slow_s: float | None = None,
    outage: bool | None = None,
    outage_every_s: float | None = None,
    outage_for_s: float | None = None,
    new_bosses: list[str | Mapping[str, str]] | None = None,
) -> None:
    """Serve a population under uvicorn until SIGINT or SIGTERM. `faults` is the whole JSON
    document of PUT /_sim/faults; the other keywords replace one field of it each."""
    config = build_faults(
        faults,
        rates=fault_rates,
        prefixes=fault_prefixes,
        retry_after_s=retry_after_s,
        slow_s=slow_s,
        outage=outage,
        outage_every_s=outage_every_s,
        outage_for_s=outage_for_s,
        new_bosses=new_bosses,
    )
    population = Population(players, seed=seed, tick_s=tick_s, epoch=epoch)
    serve_asgi(SimApp(population, faults=config), host, port)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
