"""/v1/leaderboards/current and /gains among tracked players, /v1/stats, and a player's
/achievements."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import FromPath, QueryParameter

from services.api import examples
from services.api.gains import PeriodError, parse_period
from services.api.guards import admin_only
from services.api.history import player_id_of
from services.api.players import key_of
from services.api.queries import STATUS
from shared import xp
from shared.modes import GameMode
from shared.packed import unpack

MODES = ", ".join(m.value for m in GameMode)

CURRENT = """
SELECT p.key, p.display_name, p.mode, l.value, p.total_level, p.last_changed_at
FROM latest_values l JOIN players p ON p.id = l.player_id
WHERE l.metric_id = %(metric_id)s AND p.tracked AND (%(mode)s::text IS NULL OR p.mode = %(mode)s)
  AND (%(after_value)s::bigint IS NULL OR l.value < %(after_value)s
       OR (l.value = %(after_value)s AND p.key > %(after_key)s))
ORDER BY l.value DESC, p.key
LIMIT %(limit)s
"""

# Only players changed since the start can have gained; for each, the observation that is the
# baseline (the last at or before the start, else the first after it) and the latest value.
GAINS = """
SELECT p.key, p.display_name, p.mode, COALESCE(l.value, 0), p.last_changed_at,
       base.observed_at, base.data
FROM players p
LEFT JOIN latest_values l ON l.player_id = p.id AND l.metric_id = %(metric_id)s
CROSS JOIN LATERAL (
    SELECT observed_at, data FROM (
        (SELECT 0 AS pick, observed_at, data FROM observations
         WHERE player_id = p.id AND observed_at <= %(start)s
         ORDER BY observed_at DESC LIMIT 1)
        UNION ALL
        (SELECT 1, observed_at, data FROM observations
         WHERE player_id = p.id AND observed_at > %(start)s
         ORDER BY observed_at LIMIT 1)
    ) AS ends ORDER BY pick LIMIT 1
) AS base
WHERE p.tracked AND p.last_changed_at > %(start)s
  AND (%(mode)s::text IS NULL OR p.mode = %(mode)s)
"""

STATS_PLAYERS = f"""
SELECT ({STATUS}) AS status, p.mode, count(*)
FROM players p LEFT JOIN fetch_status s ON s.player_key = p.key
GROUP BY 1, 2
"""

STATS_OBSERVATIONS = "SELECT count(*) FROM observations"

STATS_FETCHES = """
SELECT outcome, sum(count)::bigint FROM fetch_outcomes
WHERE hour > now() - interval '24 hours' GROUP BY outcome
"""

ACHIEVEMENTS = """
SELECT key, kind, metric, threshold, observed_at, previous_at, before_tracking
FROM achievements WHERE player_id = %s AND (%s::text IS NULL OR kind = %s)
ORDER BY observed_at, key
"""

ACHIEVEMENT_KINDS = (
    "base_level",
    "level_99",
    "xp_200m",
    "total_level",
    "overall_xp",
    "boss_kc",
    "clues",
)


class BoardEntry(msgspec.Struct):
    position: int
    key: str
    display_name: str
    mode: str
    value: int  # xp for a skill, score for an activity
    level: int | None  # skills only; Overall's is the total level
    last_changed_at: datetime | None


class CurrentBoard(msgspec.Struct):
    metric: str
    kind: str
    mode: str | None
    entries: list[BoardEntry]
    next_cursor: str | None  # the `cursor` of the next page; null on the last one


class GainEntry(msgspec.Struct):
    position: int
    key: str
    display_name: str
    mode: str
    gained: int
    start_value: int
    end_value: int
    start_observed_at: datetime  # the baseline observation
    end_observed_at: datetime | None  # the latest one


class GainsBoard(msgspec.Struct):
    metric: str
    kind: str
    mode: str | None
    start_at: datetime = msgspec.field(name="from")
    end_at: datetime = msgspec.field(name="to")
    entries: list[GainEntry] = []
    next_cursor: str | None = None  # the `cursor` of the next page; null on the last one


class Stats(msgspec.Struct):
    players: int
    players_by_status: dict[str, int]
    players_by_mode: dict[str, int]
    tracked_by_mode: dict[str, int]
    observations: int
    fetches_last_24h: dict[str, int]  # outcomes of the fetches the projector saw


class Achievement(msgspec.Struct):
    key: str
    kind: str
    metric: str | None
    threshold: int
    observed_at: datetime  # the first observation that showed it
    previous_at: datetime | None  # reached between this observation and observed_at
    before_tracking: bool  # shown by the first observation: reached before tracking began


class Achievements(msgspec.Struct):
    key: str
    items: list[Achievement]


Limit = Annotated[int, QueryParameter(ge=1, le=100, description="entries, 1 to 100")]
Mode = Annotated[str | None, QueryParameter(description=f"only players of this mode: {MODES}")]
Metric = Annotated[str, QueryParameter(description="a metric key, like overall, attack, zulrah")]
Cursor = Annotated[
    str | None,
    QueryParameter(
        description="next_cursor of the previous page",
        max_length=48,
        pattern=r"^[0-9]{1,6}\.-?[0-9]{1,19}\.[a-z0-9_]{1,12}$",
    ),
]


class Page(msgspec.Struct, frozen=True):
    """Where a board page starts: after this position, value and key (ties go by key)."""

    position: int = 0
    value: int | None = None
    key: str = ""

    @classmethod
    def after(cls, cursor: str | None) -> Page:
        if cursor is None:
            return cls()
        position, value, key = cursor.split(".", 2)
        return cls(int(position), int(value), key)

    def follows(self, value: int, key: str) -> bool:
        return self.value is None or value < self.value or (value == self.value and key > self.key)

    def next_cursor(self, shown: int, value: int, key: str) -> str:
        return f"{self.position + shown}.{value}.{key}"


def _mode(mode: str | None) -> str | None:
    if mode is not None and mode not in GameMode._value2member_map_:
        raise ValidationException(f"unknown mode {mode!r}; valid: {MODES}")
    return mode


async def known_metric(state: State, conn, metric: str) -> tuple[int, str]:
    """(id, kind) of a metric key, or a 400 that lists the valid keys."""
    metrics = await state.metrics.get(conn, ())
    for metric_id, key, kind in metrics:
        if key == metric:
            return metric_id, kind
    raise ValidationException(
        f"unknown metric {metric!r}; valid: {', '.join(sorted(k for _, k, _ in metrics))}"
    )


def _level(metric: str, kind: str, value: int, total_level: int | None) -> int | None:
    if kind != "skill":
        return None
    return total_level if metric == "overall" else xp.level(value)


class LeaderboardsController(Controller):
    path = "/v1/leaderboards"
    tags = ["leaderboards"]

    @get(
        "/current",
        summary="Highest xp or score of one metric among tracked players",
        responses=examples.ok(CurrentBoard, examples.CURRENT_BOARD),
    )
    async def current(
        self,
        state: State,
        metric: Metric,
        mode: Mode = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> CurrentBoard:
        mode = _mode(mode)
        page = Page.after(cursor)
        async with state.pool.connection() as conn:
            metric_id, kind = await known_metric(state, conn, metric)
            params = {
                "metric_id": metric_id,
                "mode": mode,
                "limit": limit + 1,  # one more says whether another page follows
                "after_value": page.value,
                "after_key": page.key,
            }
            rows = await (await conn.execute(CURRENT, params)).fetchall()
        more, rows = len(rows) > limit, rows[:limit]
        entries = [
            BoardEntry(
                position=page.position + i,
                key=key,
                display_name=name,
                mode=player_mode,
                value=value,
                level=_level(metric, kind, value, total_level),
                last_changed_at=changed_at,
            )
            for i, (key, name, player_mode, value, total_level, changed_at) in enumerate(rows, 1)
        ]
        last = entries[-1] if more else None
        return CurrentBoard(
            metric=metric,
            kind=kind,
            mode=mode,
            entries=entries,
            next_cursor=page.next_cursor(limit, last.value, last.key) if last else None,
        )

    @get(
        "/gains",
        summary="Top gainers of one metric over a period among tracked players",
        description=(
            "Each player's gain from the start of the period until now: the latest value minus "
            "the value at the start (the last observation at or before it, else the first one "
            "after it). Unranked counts as 0; players who gained nothing are left out."
        ),
        responses=examples.ok(GainsBoard, examples.GAINS_BOARD),
    )
    async def gains(
        self,
        state: State,
        metric: Metric,
        period: Annotated[
            str, QueryParameter(description="day, week, month, year or a span like 3d12h")
        ] = "week",
        mode: Mode = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> GainsBoard:
        mode = _mode(mode)
        page = Page.after(cursor)
        try:
            span = parse_period(period)
        except PeriodError as exc:
            raise ValidationException(str(exc)) from None
        end_at = datetime.now(UTC)
        start_at = end_at - span
        async with state.pool.connection() as conn:
            metric_id, kind = await known_metric(state, conn, metric)
            rows = await (
                await conn.execute(GAINS, {"metric_id": metric_id, "mode": mode, "start": start_at})
            ).fetchall()
        gained = []
        for key, name, player_mode, end_value, end_at_obs, start_obs, data in rows:
            start_value = next((v for m, _, v in unpack(data) if m == metric_id), -1)
            gain = end_value - max(start_value, 0)
            if gain > 0 and page.follows(gain, key):
                gained.append(
                    (
                        gain,
                        key,
                        name,
                        player_mode,
                        max(start_value, 0),
                        end_value,
                        start_obs,
                        end_at_obs,
                    )
                )
        gained.sort(key=lambda g: (-g[0], g[1]))
        entries = [
            GainEntry(page.position + i, key, name, m, gain, start, end, start_obs, end_obs)
            for i, (gain, key, name, m, start, end, start_obs, end_obs) in enumerate(
                gained[:limit], 1
            )
        ]
        last = entries[-1] if len(gained) > limit else None
        return GainsBoard(
            metric=metric,
            kind=kind,
            mode=mode,
            start_at=start_at,
            end_at=end_at,
            entries=entries,
            next_cursor=page.next_cursor(limit, last.gained, last.key) if last else None,
        )


@get(
    "/v1/stats",
    summary="Players by status and mode, observations, fetches in the last 24 h",
    tags=["stats"],
    responses=examples.ok(Stats, examples.STATS),
    guards=[admin_only],
)
async def stats(state: State) -> Stats:
    async with state.pool.connection() as conn:
        players = await (await conn.execute(STATS_PLAYERS)).fetchall()
        (observations,) = await (await conn.execute(STATS_OBSERVATIONS)).fetchone()
        fetches = await (await conn.execute(STATS_FETCHES)).fetchall()
    by_status: dict[str, int] = {}
    by_mode: dict[str, int] = {}
    tracked: dict[str, int] = {}
    for status, mode, count in players:
        by_status[status] = by_status.get(status, 0) + count
        by_mode[mode] = by_mode.get(mode, 0) + count
        if status != "untracked":
            tracked[mode] = tracked.get(mode, 0) + count
    return Stats(
        players=sum(by_status.values()),
        players_by_status=by_status,
        players_by_mode=by_mode,
        tracked_by_mode=tracked,
        observations=observations,
        fetches_last_24h=dict(fetches),
    )


class AchievementsController(Controller):
    path = "/v1/players/{name:str}"
    tags = ["history"]

    @get(
        "/achievements",
        summary="Milestones reached, each with the observation that first showed it",
        description=(
            "Base levels 60-99, each 99, 200M xp per skill, total level and overall xp "
            "milestones, boss kill and clue milestones. `before_tracking` marks those the "
            "first observation already showed; for the others the milestone was reached "
            "between `previous_at` and `observed_at`."
        ),
        responses=examples.ok(Achievements, examples.ACHIEVEMENTS),
    )
    async def achievements(
        self,
        name: FromPath[str],
        state: State,
        kind: Annotated[
            str | None, QueryParameter(description=f"one of {', '.join(ACHIEVEMENT_KINDS)}")
        ] = None,
    ) -> Achievements:
        if kind is not None and kind not in ACHIEVEMENT_KINDS:
            raise ValidationException(
                f"unknown kind {kind!r}; valid: {', '.join(ACHIEVEMENT_KINDS)}"
            )
        key = key_of(name)
        async with state.pool.connection() as conn:
            player_id = await player_id_of(conn, key, name)
            rows = await (await conn.execute(ACHIEVEMENTS, (player_id, kind, kind))).fetchall()
        return Achievements(key=key, items=[Achievement(*row) for row in rows])
