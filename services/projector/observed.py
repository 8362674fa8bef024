"""`HiscoreObserved` events applied many at a time: a run of observations of distinct players
costs one statement for the observations and their players, then one pipelined round trip for
the achievements, latest values and outbox rows of the whole run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from psycopg import AsyncConnection

from services.projector import queries
from shared import milestones, subjects, xp
from shared.events import (
    PROGRESS_KINDS,
    HiscoreObserved,
    LevelUp,
    MilestoneReached,
    PlayerProgressed,
    ProgressEvent,
    encode,
)
from shared.metrics import MetricKind, metric_key
from shared.milestones import Milestone
from shared.modes import GameMode
from shared.packed import pack, unpack

PROGRESS_KIND = {type_: kind for kind, type_ in PROGRESS_KINDS.items()}


class Metrics:
    """The metric registry as the database numbers it: key <-> stable integer id."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.keys: dict[int, tuple[str, str]] = {}  # id -> (key, kind)

    def load(self, rows: Sequence[tuple[str, int, str]]) -> None:
        self.ids = {key: id_ for key, id_, _ in rows}
        self.keys = {id_: (key, kind) for key, id_, kind in rows}

    def forget(self) -> None:
        self.ids, self.keys = {}, {}

    def by_key(self, values: dict[int, int]) -> tuple[dict[str, int], dict[str, int]]:
        """Values by metric id -> (skills, activities) by metric key."""
        skills, activities = {}, {}
        for metric_id, value in values.items():
            key, kind = self.keys[metric_id]
            (skills if kind == MetricKind.SKILL else activities)[key] = value
        return skills, activities


@dataclass(slots=True)
class Writes:
    """What a run of observations adds besides the observations, sent in one round trip."""

    achievements: list[tuple] = field(default_factory=list)
    latest_set: list[tuple[int, int, int]] = field(default_factory=list)
    latest_drop: list[tuple[int, int]] = field(default_factory=list)
    outbox: list[ProgressEvent] = field(default_factory=list)

    async def send(self, conn: AsyncConnection) -> None:
        statements = [
            (queries.ACHIEVED, self.achievements),
            (queries.LATEST_SET, self.latest_set),
            (queries.LATEST_DROP, self.latest_drop),
            (queries.OUTBOX, [_outbox_row(e) for e in self.outbox]),
        ]
        statements = [(sql, rows) for sql, rows in statements if rows]
        if not statements:
            return
        async with conn.pipeline():
            for sql, rows in statements:
                columns = [list(column) for column in zip(*rows, strict=True)]
                await conn.execute(sql, columns, prepare=False)


def unknown_metrics(
    metrics: Metrics, events: Sequence[HiscoreObserved]
) -> set[tuple[str, str, MetricKind]]:
    """(key, name, kind) of the entries whose metric the registry has not numbered yet."""
    unknown = set()
    for event in events:
        for entries, kind in (
            (event.skills, MetricKind.SKILL),
            (event.activities, MetricKind.ACTIVITY),
        ):
            for entry in entries:
                if (key := metric_key(entry.name)) not in metrics.ids:
                    unknown.add((key, entry.name, kind))
    return unknown


def distinct_runs(events: Sequence[HiscoreObserved]) -> Iterator[list[HiscoreObserved]]:
    """The events in order, cut into runs in which no player appears twice: a run is one
    statement, and a player's observation must see the one before it."""
    run: list[HiscoreObserved] = []
    seen: set[str] = set()
    for event in events:
        if event.player_key in seen:
            yield run
            run, seen = [], set()
        run.append(event)
        seen.add(event.player_key)
    if run:
        yield run


@dataclass(slots=True)
class Observed:
    event: HiscoreObserved
    values: dict[int, int]  # metric id -> xp or score; ranked entries only
    data: bytes
    total_level: int | None
    overall_xp: int | None
    combat_level: int


def prepare(metrics: Metrics, event: HiscoreObserved) -> Observed:
    """One event's values by metric id and its packed row; every metric must be registered.

    Entries that are plainly unranked (rank -1 and no value) are left out: a metric absent
    from a row reads back as unranked, and most accounts are unranked in most activities.
    Written as plain loops: this runs for every entry of every event."""
    ids = metrics.ids
    values: dict[int, int] = {}
    rows: list[tuple[int, int, int]] = []
    levels: dict[str, int] = {}
    total_level = overall_xp = None
    for skill in event.skills:
        key = metric_key(skill.name)
        levels[key] = skill.level
        if key == "overall":
            total_level, overall_xp = skill.level, skill.xp
        if skill.rank == -1 and skill.level == 1 and skill.xp == -1:
            continue
        metric_id = ids[key]
        values[metric_id] = skill.xp
        rows.append((metric_id, skill.rank, skill.xp))
    for activity in event.activities:
        if activity.rank == -1 and activity.score == -1:
            continue
        metric_id = ids[metric_key(activity.name)]
        values[metric_id] = activity.score
        rows.append((metric_id, activity.rank, activity.score))
    return Observed(
        event=event,
        values=values,
        data=pack(rows),
        total_level=total_level,
        overall_xp=overall_xp,
        combat_level=xp.combat_level(levels),
    )


async def store(conn: AsyncConnection, metrics: Metrics, run: list[Observed], outbox: bool) -> int:
    """Store a run of observations of distinct players with all that follows from them;
    returns how many were new (a redelivered one is stored already)."""
    columns = {
        "keys": [o.event.player_key for o in run],
        "names": [o.event.display_name for o in run],
        "modes": [o.event.mode.value for o in run],
        "ats": [o.event.observed_at for o in run],
        "totals": [o.total_level for o in run],
        "xps": [o.overall_xp for o in run],
        "combats": [o.combat_level for o in run],
        "datas": [o.data for o in run],
    }
    # Planned for each run's own arrays: a cached generic plan cannot know their sizes and was
    # seen to take seconds instead of milliseconds.
    cursor = await conn.execute(queries.OBSERVATIONS, columns, prepare=False)
    rows = await cursor.fetchall()
    stored = {r[1]: (r[0], *r[2:]) for r in rows}
    writes = Writes()
    for observed in run:
        if observed.event.player_key in stored:
            follow(metrics, observed, stored[observed.event.player_key], writes, outbox)
    await writes.send(conn)
    return len(stored)


def follow(metrics: Metrics, observed: Observed, row: tuple, writes: Writes, outbox: bool) -> None:
    """The achievements, latest values and progress events of one new observation."""
    player_id, previous_at, previous_total, previous_data, later = row
    event = observed.event
    previous = {m: v for m, _, v in unpack(previous_data)} if previous_data else None
    now = metrics.by_key(observed.values)
    if previous is None:
        reached = milestones.reached(*now, observed.total_level)
    else:
        before = (*metrics.by_key(previous), previous_total)
        reached = milestones.crossed(*now, observed.total_level, before)
    first = previous is None
    writes.achievements += [
        (player_id, m.key, m.kind, m.metric, m.threshold, event.observed_at, previous_at, first)
        for m in sorted(reached)
    ]
    if later:
        return  # an old observation arriving late: the newer ones stand as they are
    _latest(player_id, observed.values, previous or {}, writes)
    if previous is not None and outbox:
        who = who_of(event.player_key, event.display_name, event.mode, event.observed_at)
        writes.outbox += progressed(metrics, who, observed.values, previous, previous_at, reached)


def _latest(
    player_id: int, values: dict[int, int], previous: dict[int, int], writes: Writes
) -> None:
    """Only what changed since the previous observation (a few metrics, usually)."""
    for metric_id, value in values.items():
        if value >= 0 and previous.get(metric_id) != value:
            writes.latest_set.append((player_id, metric_id, value))
    for metric_id, value in previous.items():
        if value >= 0 and values.get(metric_id, -1) < 0:
            writes.latest_drop.append((player_id, metric_id))


def progressed(
    metrics: Metrics,
    who: dict,
    values: dict[int, int],
    previous: dict[int, int],
    previous_at: datetime,
    reached: set[Milestone],
) -> list[ProgressEvent]:
    """The progress events of a new observation: its gains, level-ups and milestones."""
    gains: dict[str, int] = {}
    level_ups: list[ProgressEvent] = []
    for metric_id in sorted(values.keys() | previous.keys()):
        now, before = max(values.get(metric_id, 0), 0), max(previous.get(metric_id, 0), 0)
        if now == before:
            continue
        key, kind = metrics.keys[metric_id]
        gains[key] = now - before
        if kind == MetricKind.SKILL and key != "overall":
            old_level, new_level = xp.virtual_level(before), xp.virtual_level(now)
            if new_level > old_level:
                level_ups.append(
                    LevelUp(
                        **who,
                        skill=key,
                        from_level=old_level,
                        to_level=new_level,
                        virtual=new_level > xp.MAX_LEVEL,
                    )
                )
    span = (who["observed_at"] - previous_at).total_seconds()
    return [
        PlayerProgressed(**who, since=previous_at, span_s=span, gains=gains),
        *level_ups,
        *(
            MilestoneReached(
                **who,
                milestone=m.key,
                milestone_kind=m.kind,
                metric=m.metric,
                threshold=m.threshold,
            )
            for m in sorted(reached)
        ),
    ]


def who_of(player_key: str, display_name: str, mode, at: datetime) -> dict:
    return {
        "player_key": player_key,
        "display_name": display_name,
        "mode": GameMode(mode),
        "observed_at": at,
    }


def _outbox_row(event: ProgressEvent) -> tuple[str, bytes]:
    return subjects.progress_subject(event.player_key, PROGRESS_KIND[type(event)]), encode(event)
