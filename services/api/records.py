"""/v1/players/{name}/records: the best gain per metric in a UTC calendar day, ISO week, month
and year. A bucket's gain is its closing value (the last observation inside it) minus the close
of the bucket before it; the first bucket counts from the player's first observation. Only
buckets holding an observation can gain, so the last observation of each UTC day is enough."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import FromPath, QueryParameter

from services.api import examples
from services.api.gains import Observation, value_of
from services.api.history import observation_of, player_id_of
from services.api.players import key_of
from shared.packed import unpack

FIRST_OBSERVATION = """
SELECT observed_at, total_level, data FROM observations
WHERE player_id = %s
ORDER BY observed_at LIMIT 1
"""

# The last observation of each UTC day, oldest day first.
DAILY_CLOSES = """
SELECT DISTINCT ON (date_trunc('day', observed_at AT TIME ZONE 'UTC'))
       observed_at, total_level, data
FROM observations
WHERE player_id = %s
ORDER BY date_trunc('day', observed_at AT TIME ZONE 'UTC'), observed_at DESC
"""


def _day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_after(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


# period kind -> (start of the bucket holding a UTC instant, start of the bucket after)
BUCKETS: dict[str, tuple[Callable[[datetime], datetime], Callable[[datetime], datetime]]] = {
    "day": (_day, lambda start: start + timedelta(days=1)),
    "week": (lambda at: _day(at) - timedelta(days=at.weekday()), lambda s: s + timedelta(weeks=1)),
    "month": (lambda at: _day(at).replace(day=1), _month_after),
    "year": (lambda at: _day(at).replace(month=1, day=1), lambda s: s.replace(year=s.year + 1)),
}


class Record(msgspec.Struct):
    gain: int  # xp for a skill, score for an activity
    start: datetime  # the bucket, [start, end)
    end: datetime
    observed_at: datetime  # the observation that closed the bucket


class Records(msgspec.Struct):
    key: str
    records: dict[str, dict[str, Record]]  # period kind -> metric key -> its best bucket


def compute_records(
    observations: list[Observation],
    metrics: list[tuple[int, str, str]],
    periods: Iterable[str] = BUCKETS,
) -> dict[str, dict[str, Record]]:
    """Per period kind and metric, the bucket with the largest positive gain (earliest on a tie).
    `observations` run oldest first and hold the player's first observation and the last of
    each UTC day; more are harmless."""
    return {period: _best(observations, metrics, period) for period in periods}


def _best(
    observations: list[Observation], metrics: list[tuple[int, str, str]], period: str
) -> dict[str, Record]:
    keys = {metric_id: metric_key for metric_id, metric_key, _ in metrics}
    best: dict[str, Record] = {}
    baseline = observations[0] if observations else None
    for start, end, closing in _buckets(observations, period):
        # Unranked counts as 0, so only a metric ranked at the close can have gained.
        for metric_id in closing.entries.keys() & keys.keys():
            gain = value_of(closing, metric_id)[1] - value_of(baseline, metric_id)[1]
            metric_key = keys[metric_id]
            if gain > 0 and (metric_key not in best or gain > best[metric_key].gain):
                best[metric_key] = Record(gain, start, end, closing.observed_at)
        baseline = closing
    return {metric_key: best[metric_key] for _, metric_key, _ in metrics if metric_key in best}


def _buckets(
    observations: list[Observation], period: str
) -> list[tuple[datetime, datetime, Observation]]:
    """(start, end, closing observation) of each bucket holding an observation, oldest first."""
    start_of, after = BUCKETS[period]
    buckets: list[tuple[datetime, datetime, Observation]] = []
    for observation in observations:
        start = start_of(observation.observed_at.astimezone(UTC))
        if buckets and buckets[-1][0] == start:
            buckets[-1] = (start, buckets[-1][1], observation)
        else:
            buckets.append((start, after(start), observation))
    return buckets


class RecordsController(Controller):
    path = "/v1/players/{name:str}"
    tags = ["history"]

    @get(
        "/records",
        summary="The best gain per metric in a UTC day, ISO week, month and year",
        description=(
            "Buckets follow the UTC calendar: days, ISO weeks (from Monday 00:00), months and "
            "years, each [start, end). A bucket's gain is the value at its close (the last "
            "observation inside it) minus the value before it (the last observation before "
            "`start`); the player's first observation is the baseline of the first bucket. "
            "Unranked counts as 0. Only positive gains are records, in xp for a skill and "
            "score for an activity; on a tie the earliest bucket stands. `observed_at` is the "
            "observation that closed the bucket. A player without observations has no records."
        ),
        responses=examples.ok(Records, examples.RECORDS),
    )
    async def records(
        self,
        name: FromPath[str],
        state: State,
        metric: Annotated[
            str | None, QueryParameter(description="only this metric, like attack or zulrah")
        ] = None,
        period: Annotated[
            str | None, QueryParameter(description="only this period: day|week|month|year")
        ] = None,
    ) -> Records:
        if period is not None and period not in BUCKETS:
            raise ValidationException(f"unknown period {period!r}; valid: {', '.join(BUCKETS)}")
        key = key_of(name)
        async with state.pool.connection() as conn:
            player_id = await player_id_of(conn, key, name)
            first = await observation_of(conn, FIRST_OBSERVATION, (player_id,))
            rows = await (await conn.execute(DAILY_CLOSES, (player_id,))).fetchall()
            observations = [first] if first else []
            observations += [
                Observation(at, level, {m: (r, v) for m, r, v in unpack(data)})
                for at, level, data in rows
            ]
            # Every id seen, so that a metric new to this process reloads the registry.
            metrics = await state.metrics.get(conn, {m for o in observations for m in o.entries})
        if metric is not None:
            known = sorted(metric_key for _, metric_key, _ in metrics)
            metrics = [row for row in metrics if row[1] == metric]
            if not metrics:
                raise ValidationException(f"unknown metric {metric!r}; valid: {', '.join(known)}")
        return Records(key, compute_records(observations, metrics, [period] if period else BUCKETS))
