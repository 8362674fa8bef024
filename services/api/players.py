"""/v1/players: track, list, read, untrack and refresh players."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_429_TOO_MANY_REQUESTS

from services import tracking
from services.api import examples, queries
from services.api.guards import can_write
from services.api.schemas import (
    Accepted,
    ActivityValue,
    ChangePlayer,
    PlayerCursor,
    PlayerDetail,
    PlayerPage,
    PlayerSummary,
    SkillValue,
    TrackPlayer,
)
from shared import nats as natsx
from shared import subjects, xp
from shared.events import (
    PlayerUntracked,
    PlayerUpdated,
)
from shared.modes import GameMode
from shared.packed import unpack
from shared.players import InvalidPlayerName, player_key, validate_name

MIN_INTERVAL_S = 60
MAX_INTERVAL_S = 7 * 86_400
STATUSES = ("active", "pending", "not_found", "unranked", "untracked")
MODES = tuple(GameMode)
SORTS = tuple(queries.LIST_SORT_COLUMNS)
ORDERS = ("asc", "desc")
# What a cursor may carry as its sort value: the name sort needs none but the key.
_SORT_VALUE_TYPES = {
    "name": type(None),
    "tracked_at": datetime,
    "last_changed_at": (datetime, type(None)),
    "overall_xp": (int, type(None)),
}
_KEY = re.compile(r"[a-z0-9_]{1,12}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]+")


def key_of(name: str) -> str:
    """The player_key of a name from a path, or a 400 saying why the name is impossible."""
    try:
        return player_key(name)
    except InvalidPlayerName as exc:
        raise ValidationException(str(exc)) from None


def _check_interval(interval_s: int | None) -> None:
    if interval_s is not None and not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise ValidationException(
            f"interval_s must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S} seconds"
        )


class TooManyRequests(ClientException):
    status_code = HTTP_429_TOO_MANY_REQUESTS


class PlayersController(Controller):
    path = "/v1/players"
    tags = ["players"]

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Track a player: fetched at once, then on schedule",
        responses=examples.ok(PlayerDetail, examples.TRACKED, HTTP_202_ACCEPTED),
        guards=[can_write],
    )
    async def track(
        self, data: JSONBody[TrackPlayer], request: Request, state: State
    ) -> PlayerDetail:
        try:
            display_name = validate_name(data.name)
        except InvalidPlayerName as exc:
            raise ValidationException(str(exc)) from None
        key = player_key(display_name)
        interval_s = data.interval_s or state.settings.fetch_interval
        _check_interval(data.interval_s)
        current = await self._detail(state, key)
        tracked = current is not None and current.status != "untracked"
        event = await tracking.track(
            state.js,
            state.cooldowns,
            display_name=display_name,
            mode=data.mode,  # none: the fetcher detects the account type from the boards
            interval_s=interval_s,
            known=current and tracking.Known(current.mode, current.interval_s, tracked),
            by=request.user.username,
            cooldown_s=state.settings.refresh_cooldown,
        )
        if event is None:
            return current  # already tracked as asked: nothing was published
        if current is not None:  # a change, or tracked again: its history is kept
            return msgspec.structs.replace(
                current,
                mode=event.mode,
                interval_s=interval_s,
                status=current.status if tracked else "pending",
                tracked_at=current.tracked_at if tracked else event.at,
            )
        return PlayerDetail(
            key=key,
            display_name=display_name,
            mode=event.mode,
            status="pending",
            interval_s=interval_s,
            tracked_at=event.at,
            last_fetched_at=None,
            last_changed_at=None,
            last_outcome=None,
            overall_xp=None,
            total_level=None,
            combat_level=None,
            last_detail=None,
            skills={},
            activities={},
        )

    @get(
        "/",
        summary="List players: filtered, sorted, with cursor pagination",
        description=(
            "Sorted by `sort` in `order`: by default by name (key order) ascending, and by the "
            "other sorts descending. Ties go by key, in the same order; players without a value "
            "(never observed) come last either way. For the next page pass `next_cursor` as "
            "`cursor`, with the same sort and order; it is null on the last page."
        ),
        responses=examples.ok(PlayerPage, examples.PLAYER_PAGE),
    )
    async def list_players(
        self,
        state: State,
        limit: Annotated[int, QueryParameter(ge=1, le=500, description="players per page")] = 100,
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="next_cursor of the previous page, with the same sort and order",
                max_length=200,
            ),
        ] = None,
        status: Annotated[
            str | None, QueryParameter(description="only players in this status", enum=STATUSES)
        ] = None,
        mode: Annotated[
            str | None, QueryParameter(description="only players of this game mode", enum=MODES)
        ] = None,
        name: Annotated[
            str | None,
            QueryParameter(
                description="only names starting so, in any spelling that folds alike:"
                " `Lynx T` and `lynx-t` both find lynx_titan"
            ),
        ] = None,
        sort: Annotated[
            str, QueryParameter(description="name is key order; ties go by key", enum=SORTS)
        ] = "name",
        order: Annotated[
            str | None,
            QueryParameter(description="by default asc for name, desc for the others", enum=ORDERS),
        ] = None,
    ) -> PlayerPage:
        for param, value, valid in (
            ("status", status, STATUSES),
            ("mode", mode, MODES),
            ("sort", sort, SORTS),
            ("order", order, ORDERS),
        ):
            if value is not None and value not in valid:
                raise ValidationException(f"{param} must be one of {', '.join(valid)}")
        order = order or ("asc" if sort == "name" else "desc")
        after = decode_cursor(cursor, sort, order) if cursor else None
        resume = None if after is None else "key" if sort == "name" else "value"
        if resume == "value" and after.value is None:
            resume = "null"
        params = {
            "status": status,
            "mode": mode,
            "key_like": None if name is None else key_prefix_pattern(name),
            "after_value": None if after is None else after.value,
            "after_key": None if after is None else after.key,
            "limit": limit + 1,  # one more tells whether a next page exists
        }
        async with state.pool.connection() as conn:
            query = queries.list_players(sort, order == "desc", resume)
            rows = await (await conn.execute(query, params)).fetchall()
        items = [PlayerSummary(*row) for row in rows[:limit]]
        if len(rows) <= limit:
            return PlayerPage(items=items, next_cursor=None)
        last = items[-1]
        value = None if sort == "name" else getattr(last, sort)
        return PlayerPage(
            items=items, next_cursor=encode_cursor(PlayerCursor(sort, order, value, last.key))
        )

    @get(
        "/{name:str}",
        summary="The latest state of a player",
        responses=examples.ok(PlayerDetail, examples.PLAYER),
    )
    async def get_player(self, name: FromPath[str], state: State) -> PlayerDetail:
        detail = await self._detail(state, key_of(name))
        if detail is None:
            raise NotFoundException(f"player {name!r} is not tracked")
        return detail

    @patch(
        "/{name:str}",
        status_code=HTTP_202_ACCEPTED,
        summary="Change the interval or the mode",
        responses=examples.ok(PlayerDetail, examples.CHANGED, HTTP_202_ACCEPTED),
        guards=[can_write],
    )
    async def change(
        self, name: FromPath[str], data: JSONBody[ChangePlayer], request: Request, state: State
    ) -> PlayerDetail:
        if data.mode is None and data.interval_s is None:
            raise ValidationException("give interval_s, mode or both")
        _check_interval(data.interval_s)
        key = await self._tracked_key(state, name)
        current = await self._detail(state, key)
        event = PlayerUpdated(
            player_key=key,
            mode=data.mode,
            interval_s=data.interval_s,
            by=request.user.username,
            detect_mode=False if data.mode is not None else None,
        )
        await natsx.publish(
            state.js, subjects.PLAYER_UPDATED, event, msg_id=event.id, stream=subjects.EVT_STREAM
        )
        return msgspec.structs.replace(
            current,
            mode=data.mode or current.mode,
            interval_s=data.interval_s or current.interval_s,
        )

    @delete(
        "/{name:str}",
        status_code=HTTP_202_ACCEPTED,
        summary="Stop tracking (history is kept)",
        responses=examples.ok(Accepted, examples.UNTRACKING, HTTP_202_ACCEPTED),
        guards=[can_write],
    )
    async def untrack(self, name: FromPath[str], request: Request, state: State) -> Accepted:
        key = await self._tracked_key(state, name)
        event = PlayerUntracked(player_key=key, by=request.user.username)
        await natsx.publish(
            state.js, subjects.PLAYER_UNTRACKED, event, msg_id=event.id, stream=subjects.EVT_STREAM
        )
        return Accepted(key=key, status="untracking", detail="tracking stops; history is kept")

    @post(
        "/{name:str}/refresh",
        status_code=HTTP_202_ACCEPTED,
        summary="Fetch a player now",
        responses=examples.ok(Accepted, examples.FETCHING, HTTP_202_ACCEPTED),
        guards=[can_write],
    )
    async def refresh(self, name: FromPath[str], state: State) -> Response[Accepted]:
        key = await self._tracked_key(state, name)
        detail = await self._detail(state, key)
        wait = await tracking.request_fetch(
            state.js,
            state.cooldowns,
            key,
            detail.display_name,
            detail.mode,
            cooldown_s=state.settings.refresh_cooldown,
        )
        if wait:
            cooldown = state.settings.refresh_cooldown
            raise TooManyRequests(
                f"{key} was refreshed less than {cooldown} s ago; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        return Response(
            Accepted(key=key, status="fetching", detail="a fetch was requested"),
            status_code=HTTP_202_ACCEPTED,
        )

    async def _tracked_key(self, state: State, name: str) -> str:
        key = key_of(name)
        async with state.pool.connection() as conn:
            row = await (await conn.execute(queries.IS_TRACKED, (key,))).fetchone()
        if not row or not row[0]:
            raise NotFoundException(f"player {name!r} is not tracked")
        return key

    async def _detail(self, state: State, key: str) -> PlayerDetail | None:
        async with state.pool.connection() as conn:
            row = await (await conn.execute(queries.GET_PLAYER, (key,))).fetchone()
            if row is None:
                return None
            total_level, data = row[-2:]
            entries = {m: (rank, value) for m, rank, value in unpack(data or b"")}
            metrics = await state.metrics.get(conn, entries)
        skills, activities = (
            latest_values(metrics, entries, total_level) if data is not None else ({}, {})
        )
        return PlayerDetail(*row[:-3], last_detail=row[-3], skills=skills, activities=activities)


def key_prefix_pattern(prefix: str) -> str:
    """The LIKE pattern of the keys that start with a name prefix, folded as keys are."""
    try:
        # player_key strips spaces, but a trailing one belongs to a prefix: fold it first.
        folded = player_key(prefix.replace(" ", "_"))
    except InvalidPlayerName as exc:
        raise ValidationException(f"name prefix: {exc}") from None
    return re.sub(r"([\\%_])", r"\\\1", folded) + "%"


def encode_cursor(cursor: PlayerCursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).rstrip(b"=").decode()


def decode_cursor(text: str, sort: str, order: str) -> PlayerCursor:
    """The cursor inside a next_cursor handed out for this sort and order, or a 400."""
    if sort == "name" and order == "asc" and _KEY.fullmatch(text):
        return PlayerCursor(sort, order, None, text)  # the plain last key of earlier versions
    try:
        if not _CURSOR.fullmatch(text):
            raise ValueError(text)
        padded = text + "=" * (-len(text) % 4)
        cursor = msgspec.json.decode(base64.urlsafe_b64decode(padded), type=PlayerCursor)
    except (ValueError, msgspec.DecodeError):  # binascii.Error is a ValueError
        cursor = None
    if (
        cursor is None
        or (cursor.sort, cursor.order) != (sort, order)
        or not isinstance(cursor.value, _SORT_VALUE_TYPES[sort])
        or not _KEY.fullmatch(cursor.key)
    ):
        raise ValidationException(
            f"cursor is not a next_cursor of this listing (sort={sort}, order={order}):"
            " start again without one"
        )
    return cursor


def latest_values(
    metrics: list[tuple[int, str, str]],
    entries: dict[int, tuple[int, int]],
    total_level: int | None,
) -> tuple[dict[str, SkillValue], dict[str, ActivityValue]]:
    """Every known metric from one observation's entries (metric id -> rank, value); a metric
    absent from them is unranked (-1), as the hiscores report it. Levels follow from xp, but
    Overall's, which is stored."""
    skills: dict[str, SkillValue] = {}
    activities: dict[str, ActivityValue] = {}
    unranked = (-1, -1)
    virtual_level, max_level = xp.virtual_level, xp.MAX_LEVEL
    for metric_id, metric_key, kind in metrics:
        rank, value = entries.get(metric_id, unranked)
        if kind != "skill":
            activities[metric_key] = ActivityValue(rank, value)
        elif metric_key == "overall":
            skills[metric_key] = SkillValue(rank, total_level or 0, value)
        else:
            virtual = virtual_level(value)  # xp.level is this, capped at 99
            skills[metric_key] = SkillValue(rank, min(virtual, max_level), value, virtual)
    return skills, activities
