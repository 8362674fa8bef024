"""/v1/players/{name}/gains: what a player gained over a period or between two instants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter

from services.api import queries
from services.api.gains import Gains, Observation, PeriodError, compute_gains, parse_period
from shared.packed import unpack
from shared.players import InvalidPlayerName, player_key


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
        try:
            key = player_key(name)
        except InvalidPlayerName as exc:
            raise ValidationException(str(exc)) from None
        async with state.pool.connection() as conn:
            row = await (await conn.execute(queries.PLAYER_ID, (key,))).fetchone()
            if row is None:
                raise NotFoundException(f"player {name!r} is not tracked")
            (player_id,) = row
            start = await _observation(conn, queries.OBSERVATION_AT, (player_id, start_at))
            if start is None:
                start = await _observation(
                    conn, queries.FIRST_OBSERVATION_IN, (player_id, start_at, end_at)
                )
            end = await _observation(conn, queries.OBSERVATION_AT, (player_id, end_at))
            needed = set(start.entries if start else ()) | set(end.entries if end else ())
            metrics = await state.metrics.get(conn, needed)
        return compute_gains(key, start_at, end_at, metrics, start, end)


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
    start_at, end_at = _utc(start_at), _utc(end_at) if end_at else now
    if start_at > end_at:
        raise ValidationException(
            f"from ({start_at.isoformat()}) is after to ({end_at.isoformat()})"
        )
    return start_at, end_at


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _observation(conn, query: str, params: tuple) -> Observation | None:
    row = await (await conn.execute(query, params)).fetchone()
    if row is None:
        return None
    observed_at, total_level, data = row
    return Observation(observed_at, total_level, {m: (r, v) for m, r, v in unpack(data)})
