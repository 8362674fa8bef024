"""The `/_sim/` control API: health, stats, the population, pins, faults and the truth.

GET    /_sim/health
GET    /_sim/stats            DELETE /_sim/stats
GET    /_sim/players?limit=&offset=&active=&account_type=&profile=
GET    /_sim/truth?player=&module=&fmt=json|csv&t=   (the payload without pins or faults)
GET    /_sim/pins             DELETE /_sim/pins
POST   /_sim/pin/{name}       DELETE /_sim/pin/{name}
GET    /_sim/faults           PUT /_sim/faults (the whole config)   DELETE /_sim/faults
GET    /_sim/clock            PUT /_sim/clock {"frozen": true|false}  (stop or restart time)
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec

from shared.modes import MODE_BY_MODULE, MODULES, GameMode
from shared.players import InvalidPlayerName, player_key
from sim.faults import NO_FAULTS, FaultError, parse_faults
from sim.pins import PinError, parse_pin
from sim.population import SimPlayer
from sim.profiles import Profile
from sim.replies import CSV, JSON, NO_CONTENT, NOT_FOUND, Receive, Reply, detail, json_reply

if TYPE_CHECKING:
    from sim.app import SimApp

Scope = MutableMapping[str, Any]
MAX_BODY = 1 << 20
PLAYERS_PAGE_MAX = 10_000

_PIN_PATH = re.compile(r"/_sim/pin/(.+)")


def query(scope: Scope) -> dict[str, list[str]]:
    # latin-1 keeps every byte; parse_qs then undoes the %-escapes as UTF-8.
    return parse_qs(scope["query_string"].decode("latin-1"))


async def control(app: SimApp, scope: Scope, receive: Receive, path: str) -> Reply:
    method = scope["method"]
    if path == "/_sim/health" and method == "GET":
        return json_reply(200, {"status": "ok", "players": app.population.size})
    if path == "/_sim/stats" and method in ("GET", "DELETE"):
        if method == "DELETE":
            app.clear_stats()
            return NO_CONTENT
        return json_reply(200, app.stats())
    if path == "/_sim/players" and method == "GET":
        return _players(app, query(scope))
    if path == "/_sim/truth" and method == "GET":
        return _truth(app, query(scope))
    if path == "/_sim/clock" and method in ("GET", "PUT"):
        return await _clock(app, method, receive)
    if path == "/_sim/faults" and method in ("GET", "PUT", "DELETE"):
        return await _faults(app, method, receive)
    if path == "/_sim/pins" and method in ("GET", "DELETE"):
        if method == "GET":
            return json_reply(200, app.pins.counts())
        app.pins.clear_all()
        return NO_CONTENT
    match = _PIN_PATH.fullmatch(path)
    if match is not None and method in ("POST", "DELETE"):
        return await _pin(app, match[1], method, receive)
    return detail(404, f"no simulator route {method} {path}")


def _players(app: SimApp, params: dict[str, list[str]]) -> Reply:
    try:
        limit = min(int(_one(params, "limit", "100")), PLAYERS_PAGE_MAX)
        offset = int(_one(params, "offset", "0"))
        active = _flag(_one(params, "active", ""))
        account_type = _one(params, "account_type", "")
        wanted_type = GameMode(account_type) if account_type else None
        type_now = _one(params, "account_type_now", "") or None
        profile = _one(params, "profile", "")
        wanted_profile = Profile(profile) if profile else None
    except ValueError as exc:
        return detail(400, f"bad players query: {exc}")
    if limit < 0 or offset < 0:
        return detail(400, "limit and offset must not be negative")
    page: list[dict[str, Any]] = []
    players = app.population.players
    now = app.clock()
    # Up to `limit` players from `offset` on (offset counts players before filtering).
    for index in range(offset, len(players)):
        if len(page) >= limit:
            break
        player = players[index]
        if active is not None and player.active != active:
            continue
        if wanted_type is not None and player.account_type != wanted_type:
            continue
        if wanted_profile is not None and player.profile != wanted_profile:
            continue
        if type_now is not None and app.population.account_type_at(player, now) != type_now:
            continue
        page.append(_describe(app, player, now))
    return json_reply(200, page)


def _describe(app: SimApp, player: SimPlayer, now: float) -> dict[str, Any]:
    body = player.as_json()
    body["account_type_now"] = app.population.account_type_at(player, now)
    at = app.population.time_of_tick
    body["died_at"] = at(player.died_at_tick) if player.died_at_tick is not None else None
    deironed = player.deironed_at_tick
    body["deironed_at"] = at(deironed) if deironed is not None else None
    return body


def _truth(app: SimApp, params: dict[str, list[str]]) -> Reply:
    """What the board shows now (or at `t`), pins and faults aside: for comparing in tests."""
    module = _one(params, "module", MODULES[GameMode.REGULAR])
    fmt = _one(params, "fmt", "json")
    if module not in MODE_BY_MODULE or fmt not in ("json", "csv"):
        return detail(400, "module must be a hiscores module and fmt json or csv")
    try:
        t = float(_one(params, "t", "nan"))
    except ValueError:
        return detail(400, "t must be unix seconds")
    player = app.population.find(_one(params, "player", ""))
    if player is None:
        return NOT_FOUND
    when = app.clock() if t != t else t  # NaN: now
    body = app.population.payload(player, when, module, fmt, app.faults.layout)
    if body is None:
        return NOT_FOUND
    return Reply(200, body, JSON if fmt == "json" else CSV)


class ClockChange(msgspec.Struct, forbid_unknown_fields=True):
    frozen: bool


async def _clock(app: SimApp, method: str, receive: Receive) -> Reply:
    if method == "PUT":
        raw = await read_body(receive)
        if raw is None:
            return detail(413, f"a clock body is at most {MAX_BODY} bytes")
        try:
            change = msgspec.json.decode(raw, type=ClockChange)
        except msgspec.DecodeError as exc:
            return detail(400, f'bad clock change (want {{"frozen": true|false}}): {exc}')
        app.freeze(change.frozen)
    return json_reply(200, {"now": app.clock(), "frozen": app.frozen_at is not None})


async def _faults(app: SimApp, method: str, receive: Receive) -> Reply:
    if method == "GET":
        return json_reply(200, msgspec.to_builtins(app.faults.config))
    if method == "DELETE":
        app.set_faults(NO_FAULTS)
        return NO_CONTENT
    raw = await read_body(receive)
    if raw is None:
        return detail(413, f"a faults body is at most {MAX_BODY} bytes")
    try:
        app.set_faults(parse_faults(raw))
    except FaultError as exc:
        return detail(exc.status, exc.detail)
    return json_reply(200, msgspec.to_builtins(app.faults.config))


async def _pin(app: SimApp, name: str, method: str, receive: Receive) -> Reply:
    try:
        key = player_key(name)
    except InvalidPlayerName as exc:
        return detail(400, f"bad player name {name!r}: {exc}")
    if method == "DELETE":
        app.pins.clear(key)
        return NO_CONTENT
    raw = await read_body(receive)
    if raw is None:
        return detail(413, f"a pin body is at most {MAX_BODY} bytes")
    try:
        app.pins.add(key, parse_pin(raw))
    except PinError as exc:
        return detail(exc.status, exc.detail)
    return NO_CONTENT


def _one(params: dict[str, list[str]], name: str, default: str) -> str:
    return params.get(name, [default])[0]


def _flag(value: str) -> bool | None:
    if value == "":
        return None
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"active must be true or false, got {value!r}")


async def read_body(receive: Receive) -> bytes | None:
    """The request body, or None past MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
