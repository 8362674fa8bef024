"""/v1/players/{name}/gains, /snapshots and /timeline: a player's stored history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter

from services.api import examples, queries
from services.api.gains import Gains, Observation, PeriodError, compute_gains, parse_period
from services.api.players import key_of, latest_values
from services.api.schemas import ActivityValue, SkillValue
from shared.packed import unpack

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIMELINE_POINTS = 5000


class Snapshot(msgspec.Struct):
    observed_at: datetime
    mode: str
    total_level: int | None
    skills: dict[str, SkillValue]
    activities: dict[str, ActivityValue]


class SnapshotPage(msgspec.Struct):
    items: list[Snapshot]
    next_cursor: datetime | None


class Point(msgspec.Struct):
    at: datetime
    rank: int
    value: int  # xp for a skill, score for an activity; -1 unranked


class Timeline(msgspec.Struct):
    key: str
    metric: str
    kind: str
    points: list[Point]


class HistoryController(Controller):
    path = "/v1/players/{name:str}"
    tags = ["history"]

    @get(
        "/gains",
        summary="Gains over a period (day, week, month, year or like 3d12h) or from/to",
        description=(
            "Per metric, the value at `to` minus the value at `from`, where the value at an "
            "instant is the last observation at or before it (when nothing was observed "
            "before `from`, the first observation after it is the baseline). Unranked counts "
            "as 0. `start` and `end` name the observations used; both null when the window "
            "holds no data, and every gain is then 0."
        ),
        responses=examples.ok(Gains, examples.GAINS),
    )
    async def gains(
        self,
        name: FromPath[str],
        state: State,
        period: Annotated[
            str | None, QueryParameter(description="day|week|month|year|3d12h")
        ] = None,
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: Annotated[datetime | None, QueryParameter()] = None,
    ) -> Gains:
        start_at, end_at = _window(period, from_, to)
        key = key_of(name)
        async with state.pool.connection() as conn:
            params = {"key": key, "start": start_at, "end": end_at}
            row = await (await conn.execute(queries.GAINS_ENDS, params)).fetchone()
            if row is None:
                raise NotFoundException(f"player {name!r} is not tracked")
            start, end = _observation(*row[1:4]), _observation(*row[4:7])
            needed = set(start.entries if start else ()) | set(end.entries if end else ())
            metrics = await state.metrics.get(conn, needed)
        return compute_gains(key, start_at, end_at, metrics, start, end)

    @get(
        "/snapshots",
        summary="The stored observations, oldest first, with cursor pagination",
        responses=examples.ok(SnapshotPage, examples.SNAPSHOTS),
    )
    async def snapshots(
        self,
        name: FromPath[str],
        state: State,
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: Annotated[datetime | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: Annotated[
            datetime | None, QueryParameter(description="next_cursor of the previous page")
        ] = None,
    ) -> SnapshotPage:
        start_at, end_at = _range(from_, to)
        key = key_of(name)
        async with state.pool.connection() as conn:
            player_id = await player_id_of(conn, key, name)
            rows = await _between(conn, player_id, start_at, end_at, cursor, limit + 1)
            more = len(rows) > limit  # one row past the page says whether another follows
            rows = rows[:limit]
            metrics = await state.metrics.get(conn, {m for *_, data in rows for m, _, _ in data})
        items = []
        for observed_at, mode, total_level, data in rows:
            entries = {m: (r, v) for m, r, v in data}
            skills, activities = latest_values(metrics, entries, total_level)
            items.append(Snapshot(observed_at, mode, total_level, skills, activities))
        return SnapshotPage(items=items, next_cursor=items[-1].observed_at if more else None)

    @get(
        "/timeline",
        summary="One metric over time, for charts: a point per observation",
        responses=examples.ok(Timeline, examples.TIMELINE),
    )
    async def timeline(
        self,
        name: FromPath[str],
        state: State,
        metric: Annotated[str, QueryParameter(description="a metric key, like attack or zulrah")],
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: Annotated[datetime | None, QueryParameter()] = None,
    ) -> Timeline:
        start_at, end_at = _range(from_, to)
        key = key_of(name)
        async with state.pool.connection() as conn:
            metrics = await state.metrics.get(conn, ())
            known = {metric_key: (metric_id, kind) for metric_id, metric_key, kind in metrics}
            if metric not in known:
                raise ValidationException(
                    f"unknown metric {metric!r}; valid: {', '.join(sorted(known))}"
                )
            metric_id, kind = known[metric]
            player_id = await player_id_of(conn, key, name)
            rows = await _between(conn, player_id, start_at, end_at, None, MAX_TIMELINE_POINTS)
        points = []
        for observed_at, _, _, data in rows:
            rank, value = next(((r, v) for m, r, v in data if m == metric_id), (-1, -1))
            points.append(Point(observed_at, rank, value))
        return Timeline(key=key, metric=metric, kind=kind, points=points)


async def player_id_of(conn, key: str, name: str) -> int:
    row = await (await conn.execute(queries.PLAYER_ID, (key,))).fetchone()
    if row is None:
        raise NotFoundException(f"player {name!r} is not tracked")
    return row[0]


async def _between(conn, player_id, start_at, end_at, after, limit) -> list[tuple]:
    rows = await (
        await conn.execute(
            queries.OBSERVATIONS_BETWEEN,
            {
                "player_id": player_id,
                "start": start_at,
                "end": end_at,
                "after": _utc(after) if after else EPOCH,
                "limit": limit,
            },
        )
    ).fetchall()
    return [(at, mode, level, list(unpack(data))) for at, mode, level, data in rows]


def _range(start_at: datetime | None, end_at: datetime | None) -> tuple[datetime, datetime]:
    start_at = _utc(start_at) if start_at else EPOCH
    end_at = _utc(end_at) if end_at else datetime.now(UTC)
    if start_at > end_at:
        raise ValidationException(
            f"from ({start_at.isoformat()}) is after to ({end_at.isoformat()})"
        )
    return start_at, end_at


def _window(
    period: str | None, start_at: datetime | None, end_at: datetime | None
) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    if period is not None and (start_at or end_at):
        raise ValidationException("give either period or from/to, not both")
    if period is not None:
        try:
            return now - parse_period(period), now
        except PeriodError as exc:
            raise ValidationException(str(exc)) from None
    if start_at is None:
        raise ValidationException("give period (day, week, month, year, like 3d12h) or from")
    return _range(start_at, end_at)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _observation(observed_at, total_level, data) -> Observation | None:
    if observed_at is None:
        return None
    return Observation(observed_at, total_level, {m: (r, v) for m, r, v in unpack(data)})


async def observation_of(conn, query: str, params: tuple) -> Observation | None:
    row = await (await conn.execute(query, params)).fetchone()
    return None if row is None else _observation(*row)
