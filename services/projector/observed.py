"""`HiscoreObserved` events applied many at a time: a run of observations of distinct players
costs one statement for the observations and their players, then one pipelined round trip for
the achievements, latest values and outbox rows of the whole run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from psycopg import AsyncConnection

from services.projector import queries
from shared import milestones, packed, subjects, xp
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

PROGRESS_KIND = {type_: kind for kind, type_ in PROGRESS_KINDS.items()}


class Metrics:
    """The metric registry as the database numbers it: key <-> stable integer id."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.keys: dict[int, tuple[str, str]] = {}  # id -> (key, kind)

        self.by_name: dict[str, int] = {}  # an entry's name as the hiscores spell it -> id
        self.skill_ids: list[tuple[str, int]] = []
        self.activity_ids: set[int] = set()

    def load(self, rows: Sequence[tuple[str, int, str]]) -> None:
        self.ids = {key: id_ for key, id_, _ in rows}
        self.keys = {id_: (key, kind) for key, id_, kind in rows}
        self.by_name = {}
        self.skill_ids = [(key, id_) for key, id_, kind in rows if kind == MetricKind.SKILL]
        self.activity_ids = {id_ for _, id_, kind in rows if kind == MetricKind.ACTIVITY}

    def forget(self) -> None:
        self.load([])

    def id_of(self, name: str) -> int:
        """The id of an entry's metric by its name (KeyError when not registered)."""
        self.by_name[name] = id_ = self.ids[metric_key(name)]
        return id_

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

    COLUMNS = {  # parameter names of queries.WRITES, per list
        "achievements": (
            "a_player",
            "a_key",
            "a_kind",
            "a_metric",
            "a_threshold",
            "a_at",
            "a_previous",
            "a_first",
        ),
        "latest_set": ("l_player", "l_metric", "l_value"),
        "latest_drop": ("d_player", "d_metric"),
        "outbox": ("o_subject", "o_payload"),
    }

    def params(self) -> dict[str, list]:
        """The parameters of queries.WRITES: one list per column, empty when nothing."""
        lists = {
            "achievements": self.achievements,
            "latest_set": self.latest_set,
            "latest_drop": self.latest_drop,
            "outbox": [_outbox_row(e) for e in self.outbox],
        }
        params: dict[str, list] = {}
        for name, rows in lists.items():
            names = self.COLUMNS[name]
            columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
            params |= {n: list(c) for n, c in zip(names, columns, strict=True)}
        return params

    def __bool__(self) -> bool:
        return bool(self.achievements or self.latest_set or self.latest_drop or self.outbox)

    async def send(self, conn: AsyncConnection) -> None:
        if self:
            await conn.execute(queries.WRITES_ALONE, self.params(), prepare=False)


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
                if entry.name in metrics.by_name:
                    continue
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
    skills: dict[str, int]  # skill key -> xp, every skill (-1: unranked), for the milestones
    data: bytes
    total_level: int | None
    overall_xp: int | None
    combat_level: int


def prepare(metrics: Metrics, event: HiscoreObserved) -> Observed:
    """One event's values by metric id and its packed row; every metric must be registered.

    Entries that are plainly unranked (rank -1 and no value) are left out: a metric absent
    from a row reads back as unranked, and most accounts are unranked in most activities.
    Written as plain loops: this runs for every entry of every event."""
    ids, by_name = metrics.ids, metrics.by_name
    values: dict[int, int] = {}
    rows: list[tuple[int, int, int]] = []
    levels: dict[str, int] = {}
    skills: dict[str, int] = {}
    total_level = overall_xp = None
    for skill in event.skills:
        key = metric_key(skill.name)
        levels[key] = skill.level
        skills[key] = skill.xp
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
        metric_id = by_name.get(activity.name) or metrics.id_of(activity.name)
        values[metric_id] = activity.score
        rows.append((metric_id, activity.rank, activity.score))
    return Observed(
        event=event,
        values=values,
        skills=skills,
        data=packed.pack(rows),
        total_level=total_level,
        overall_xp=overall_xp,
        combat_level=xp.combat_level(levels),
    )


CHUNK = 64  # observations per statement: Postgres stores one chunk while Python follows another


async def store(conn: AsyncConnection, metrics: Metrics, run: list[Observed], outbox: bool) -> int:
    """Store a run of observations of distinct players with all that follows from them;
    returns how many were new (a redelivered one is stored already).

    The run goes in chunks through one pipeline, one statement in flight at a time: while
    Python works out what follows from chunk k, Postgres stores chunk k + 1 together with what
    followed from chunk k - 1. So the database and this process use the two cores at once
    instead of taking turns; only the first chunk and the last chunk's writes wait alone."""
    chunks = [run[start : start + CHUNK] for start in range(0, len(run), CHUNK)]
    written = 0
    async with conn.pipeline():
        cursor = await _send(conn, chunks[0], Writes())
        followed = Writes()  # what followed from the chunk before, not sent yet
        for k, chunk in enumerate(chunks):
            rows = await cursor.fetchall()  # the only statement in the pipeline
            if k + 1 < len(chunks):
                cursor = await _send(conn, chunks[k + 1], followed)
                followed = Writes()
            stored = {r[1]: (r[0], *r[2:]) for r in rows}
            for observed in chunk:
                if observed.event.player_key in stored:
                    follow(metrics, observed, stored[observed.event.player_key], followed, outbox)
            written += len(stored)
        await followed.send(conn)
    return written


async def _send(conn: AsyncConnection, chunk: list[Observed], writes: Writes):
    params = writes.params() | {
        "keys": [o.event.player_key for o in chunk],
        "names": [o.event.display_name for o in chunk],
        "modes": [o.event.mode.value for o in chunk],
        "ats": [o.event.observed_at for o in chunk],
        "totals": [o.total_level for o in chunk],
        "xps": [o.overall_xp for o in chunk],
        "combats": [o.combat_level for o in chunk],
        "datas": [o.data for o in chunk],
    }
    # Planned for each chunk's own arrays: a cached generic plan cannot know their sizes and
    # was seen to take seconds instead of milliseconds.
    return await conn.execute(queries.WRITES_AND_OBSERVATIONS, params, prepare=False)


def follow(metrics: Metrics, observed: Observed, row: tuple, writes: Writes, outbox: bool) -> None:
    """The achievements, latest values and progress events of one new observation."""
    player_id, previous_at, previous_total, previous_data, later = row
    event, values = observed.event, observed.values
    if previous_data is None:  # the player's first: all it shows was reached before tracking
        reached = milestones.reached(
            observed.skills, metrics.by_key(values)[1], observed.total_level
        )
        previous, changed = None, sorted(values)
    else:
        previous = packed.values(previous_data)
        changed = sorted(
            {m for m, v in values.items() if previous.get(m) != v}.union(
                m for m in previous if m not in values
            )
        )
        skills_before = {key: previous.get(id_, -1) for key, id_ in metrics.skill_ids}
        # crossed() looks at no activity but those given: the changed ones are enough
        activities = [(metrics.keys[m][0], m) for m in changed if m in metrics.activity_ids]
        reached = milestones.crossed(
            observed.skills,
            {key: values.get(m, -1) for key, m in activities},
            observed.total_level,
            (skills_before, {key: previous.get(m, -1) for key, m in activities}, previous_total),
        )
    first = previous is None
    writes.achievements += [
        (player_id, m.key, m.kind, m.metric, m.threshold, event.observed_at, previous_at, first)
        for m in sorted(reached)
    ]
    if later:
        return  # an old observation arriving late: the newer ones stand as they are
    for metric_id in changed:  # latest values: only what changed (a few metrics, usually)
        value = values.get(metric_id, -1)
        if value >= 0:
            writes.latest_set.append((player_id, metric_id, value))
        elif previous.get(metric_id, -1) >= 0:
            writes.latest_drop.append((player_id, metric_id))
    if previous is not None and outbox:
        who = who_of(event.player_key, event.display_name, event.mode, event.observed_at)
        writes.outbox += progressed(metrics, who, changed, values, previous, previous_at, reached)


def progressed(
    metrics: Metrics,
    who: dict,
    changed: list[int],
    values: dict[int, int],
    previous: dict[int, int],
    previous_at: datetime,
    reached: set[Milestone],
) -> list[ProgressEvent]:
    """The progress events of a new observation: its gains, level-ups and milestones;
    `changed` holds the ids of the metrics whose values differ, in order."""
    gains: dict[str, int] = {}
    level_ups: list[ProgressEvent] = []
    for metric_id in changed:
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
