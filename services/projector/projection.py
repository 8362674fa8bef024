"""Applies events to the Postgres read models: each batch in one transaction together with the
stream position it reaches, so at-least-once delivery gives exactly-once effects."""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec
import psycopg
from nats.aio.msg import Msg
from prometheus_client import Counter
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.projector import queries
from shared import milestones, subjects, xp
from shared.events import (
    PROGRESS_KINDS,
    AccountTypeChanged,
    FetchCompleted,
    HiscoreObserved,
    LevelUp,
    Message,
    MilestoneReached,
    PlayerProgressed,
    PlayerTracked,
    PlayerUntracked,
    PlayerUpdated,
    ProgressEvent,
    TrackingChanged,
    UnknownSubject,
    decode_on,
    encode,
)
from shared.metrics import KNOWN_METRICS, MetricKind, metric_key
from shared.milestones import Milestone
from shared.modes import GameMode
from shared.packed import pack, unpack

log = logging.getLogger("osrs.projector")

DeadLetter = Callable[[Msg, str], Awaitable[None]]

EVENTS_APPLIED = Counter(
    "osrs_projector_events_applied_total",
    "Events applied to the read models (committed), by stream and event type",
    ["stream", "kind"],
)
OBSERVATIONS_WRITTEN = Counter(
    "osrs_observations_written_total", "Observations stored (a redelivered one is not counted)"
)


class Projector:
    def __init__(
        self, pool: AsyncConnectionPool, dead_letter: DeadLetter, *, outbox: bool = True
    ) -> None:
        self.pool = pool
        self.dead_letter = dead_letter
        self.outbox = outbox  # derive progress events (not when rebuilding from the log)
        self.metric_ids: dict[str, int] = {}
        self.metric_keys: dict[int, tuple[str, str]] = {}  # id -> (key, kind)
        self.tables = 0  # the checkpoint table's oid: another one after `osrs-diff rebuild`

    async def seed_metrics(self) -> None:
        """Register the known metrics, in registry order, and load every metric id."""
        async with self.pool.connection() as conn:
            async with conn.cursor() as cur:
                await cur.executemany(
                    queries.SEED_METRIC, [(m.key, m.name, m.kind.value) for m in KNOWN_METRICS]
                )
            await self._load_metric_ids(conn)

    async def _load_metric_ids(self, conn: AsyncConnection) -> None:
        rows = await (await conn.execute(queries.METRIC_IDS)).fetchall()
        self.metric_ids = {key: id_ for key, id_, _ in rows}
        self.metric_keys = {id_: (key, kind) for key, id_, kind in rows}

    async def checkpoints(self) -> dict[str, int]:
        """The last applied sequence of each stream."""
        async with self.pool.connection() as conn:
            return dict(await (await conn.execute(queries.CHECKPOINTS)).fetchall())

    async def apply_batch(self, stream: str, msgs: Sequence[Msg], *, careful: bool = False) -> int:
        """Apply the messages not applied yet; returns how many were applied.

        In careful mode (a retry after a failure) each event runs in its own savepoint, and one
        that cannot be applied is dead-lettered instead of blocking the stream."""
        try:
            return await self._apply_batch(stream, msgs, careful)
        except BaseException:
            self.metric_ids = {}  # ids registered in the rolled-back transaction are gone
            raise

    async def _apply_batch(self, stream: str, msgs: Sequence[Msg], careful: bool) -> int:
        applied = written = 0
        kinds: collections.Counter[str] = collections.Counter()
        async with self.pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(queries.LOCK_CHECKPOINT, (stream,))).fetchone()
            last_seq, tables = row
            if not self.metric_ids or tables != self.tables:  # new tables: reload the ids
                await self._load_metric_ids(conn)
                self.tables = tables
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq <= last_seq:
                    continue  # redelivered after a commit whose ack was lost
                try:
                    event = decode_on(msg.subject, msg.data)
                except (msgspec.DecodeError, msgspec.ValidationError, UnknownSubject) as exc:
                    await self.dead_letter(msg, f"cannot decode: {exc}")
                    last_seq = seq
                    continue
                if careful:
                    try:
                        async with conn.transaction():
                            written += await self.apply(conn, event, seq)
                    except psycopg.OperationalError:
                        raise  # the database is away: retry the whole batch later
                    except Exception as exc:  # noqa: BLE001 - this event can never be applied
                        await self.dead_letter(msg, f"cannot apply: {exc!r}")
                        last_seq = seq
                        continue
                else:
                    written += await self.apply(conn, event, seq)
                last_seq = seq
                applied += 1
                kinds[type(event).__name__] += 1
            await conn.execute(queries.SAVE_CHECKPOINT, (last_seq, stream))
        for kind, count in kinds.items():  # counted once committed
            EVENTS_APPLIED.labels(stream, kind).inc(count)
        OBSERVATIONS_WRITTEN.inc(written)
        return applied

    async def apply(self, conn: AsyncConnection, event: Message, seq: int) -> bool:
        """Apply one event; True when it stored a new observation."""
        match event:
            case HiscoreObserved():
                return await self._observed(conn, event, seq)
            case FetchCompleted():
                params = {
                    "key": event.player_key,
                    "mode": event.mode.value,
                    "at": event.at,
                    "outcome": event.outcome.value,
                    "http_status": event.http_status,
                    "detail": event.detail,
                    "streak": event.not_found_streak,
                }
                await conn.execute(queries.FETCH_COMPLETED, params)
                await conn.execute(queries.FETCH_COUNTED, params)
            case PlayerTracked():
                row = await (
                    await conn.execute(
                        queries.PLAYER_TRACKED,
                        {
                            "key": event.player_key,
                            "display_name": event.display_name,
                            "mode": event.mode.value,
                            "interval_s": event.interval_s,
                            "at": event.at,
                            "by": event.by,
                        },
                    )
                ).fetchone()
                was_tracked, was_mode = row
                who = _who(event.player_key, event.display_name, event.mode, event.at)
                if not was_tracked:
                    await self._publish(conn, TrackingChanged(**who, tracked=True, by=event.by))
                elif was_mode != event.mode:
                    await self._publish(conn, _mode_change(who, was_mode, event.mode))
            case PlayerUntracked():
                row = await (
                    await conn.execute(
                        queries.PLAYER_UNTRACKED, {"key": event.player_key, "at": event.at}
                    )
                ).fetchone()
                if row is not None:
                    who = _who(event.player_key, row[0], row[1], event.at)
                    await self._publish(conn, TrackingChanged(**who, tracked=False, by=event.by))
            case PlayerUpdated():
                row = await (
                    await conn.execute(
                        queries.PLAYER_UPDATED,
                        {
                            "key": event.player_key,
                            "display_name": event.display_name,
                            "mode": event.mode.value if event.mode else None,
                            "interval_s": event.interval_s,
                            "if_mode": event.if_mode.value if event.if_mode else None,
                        },
                    )
                ).fetchone()
                if row is not None and row[0] != row[1]:
                    old_mode, new_mode, display_name = row
                    who = _who(event.player_key, display_name, new_mode, event.at)
                    await self._publish(conn, _mode_change(who, old_mode, new_mode))
            case _:
                raise ValueError(f"the projector has no rule for {type(event).__name__}")
        return False

    async def _observed(self, conn: AsyncConnection, event: HiscoreObserved, seq: int) -> bool:
        entries = [
            (metric_key(s.name), s.name, MetricKind.SKILL, s.rank, s.level, s.xp)
            for s in event.skills
        ]
        entries += [
            (metric_key(a.name), a.name, MetricKind.ACTIVITY, a.rank, 0, a.score)
            for a in event.activities
        ]
        new = [(key, name, kind) for key, name, kind, *_ in entries if key not in self.metric_ids]
        if new:
            await self._register(conn, new)
        # Entries that are plainly unranked (rank -1 and no value) are left out: a metric absent
        # from a row reads back as unranked, and most accounts are unranked in most activities.
        kept = [e for e in entries if not _plain_unranked(e)]
        overall = next((s for s in event.skills if metric_key(s.name) == "overall"), None)
        params = {
            "key": event.player_key,
            "mode": event.mode.value,
            "display_name": event.display_name,
            "observed_at": event.observed_at,
            "overall_xp": overall.xp if overall else None,
            "total_level": overall.level if overall else None,
            "combat_level": xp.combat_level({metric_key(s.name): s.level for s in event.skills}),
        }
        (player_id,) = await (await conn.execute(queries.PLAYER_ID, params)).fetchone()
        values = {self.metric_ids[key]: value for key, _, _, _, _, value in kept}
        data = pack((self.metric_ids[key], rank, value) for key, _, _, rank, _, value in kept)
        params |= {"player_id": player_id, "data": data}
        inserted = await (await conn.execute(queries.INSERT_OBSERVATION, params)).fetchone()
        if inserted is None:
            return False  # a redelivered event: stored already, with all that follows from it
        await conn.execute(queries.PLAYER_OBSERVED, params)
        row = await (await conn.execute(queries.PREVIOUS_OBSERVATION, params)).fetchone()
        previous_at, previous_total, previous_data, later = row
        previous = {m: v for m, _, v in unpack(previous_data)} if previous_data else None
        reached = await self._achieved(conn, params, values, previous, previous_total, previous_at)
        if later:
            return True  # an old observation arriving late: the newer ones stand as they are
        await self._latest(conn, player_id, values, previous or {})
        if previous is not None:
            who = _who(event.player_key, event.display_name, event.mode, event.observed_at)
            await self._progressed(conn, who, values, previous, previous_at, reached)
        return True

    async def _progressed(
        self,
        conn: AsyncConnection,
        who: dict,
        values: dict[int, int],
        previous: dict[int, int],
        previous_at,
        reached: set[Milestone],
    ) -> None:
        """The progress events of a new observation: its gains, level-ups and milestones."""
        gains: dict[str, int] = {}
        events: list[ProgressEvent] = []
        for metric_id in sorted(values.keys() | previous.keys()):
            now, before = max(values.get(metric_id, 0), 0), max(previous.get(metric_id, 0), 0)
            if now == before:
                continue
            key, kind = self.metric_keys[metric_id]
            gains[key] = now - before
            if kind == MetricKind.SKILL and key != "overall":
                old_level, new_level = xp.virtual_level(before), xp.virtual_level(now)
                if new_level > old_level:
                    events.append(
                        LevelUp(
                            **who,
                            skill=key,
                            from_level=old_level,
                            to_level=new_level,
                            virtual=new_level > xp.MAX_LEVEL,
                        )
                    )
        span = (who["observed_at"] - previous_at).total_seconds()
        events.insert(0, PlayerProgressed(**who, since=previous_at, span_s=span, gains=gains))
        events += [
            MilestoneReached(
                **who,
                milestone=m.key,
                milestone_kind=m.kind,
                metric=m.metric,
                threshold=m.threshold,
            )
            for m in sorted(reached)
        ]
        await self._publish(conn, *events)

    async def _publish(self, conn: AsyncConnection, *events: ProgressEvent) -> None:
        """Into the outbox, in this transaction; the relay publishes them after the commit."""
        if not self.outbox or not events:
            return
        async with conn.cursor() as cur:
            await cur.executemany(
                queries.OUTBOX,
                [
                    (subjects.progress_subject(e.player_key, PROGRESS_KIND[type(e)]), encode(e))
                    for e in events
                ],
            )

    async def _achieved(
        self,
        conn: AsyncConnection,
        params: dict,
        values: dict[int, int],
        previous: dict[int, int] | None,
        previous_total: int | None,
        previous_at,
    ) -> set[Milestone]:
        """Milestones this observation shows and the one before did not; all of them when it
        is the player's first (reached before tracking began)."""
        new = self._milestones(values, params["total_level"])
        if previous is not None:
            new -= self._milestones(previous, previous_total)
        if not new:
            return new
        first = previous is None
        async with conn.cursor() as cur:
            await cur.executemany(
                queries.ACHIEVED,
                [
                    (
                        params["player_id"],
                        m.key,
                        m.kind,
                        m.metric,
                        m.threshold,
                        params["observed_at"],
                        previous_at,
                        first,
                    )
                    for m in sorted(new)
                ],
            )
        return new

    def _milestones(self, values: dict[int, int], total_level: int | None) -> set[Milestone]:
        skills, activities = {}, {}
        for metric_id, value in values.items():
            key, kind = self.metric_keys[metric_id]
            (skills if kind == MetricKind.SKILL else activities)[key] = value
        return milestones.reached(skills, activities, total_level)

    async def _latest(
        self,
        conn: AsyncConnection,
        player_id: int,
        values: dict[int, int],
        previous: dict[int, int],
    ) -> None:
        """Write only what changed since the previous observation (a few metrics, usually)."""
        values = {m: v for m, v in values.items() if v >= 0}
        previous = {m: v for m, v in previous.items() if v >= 0}
        changed = {m: v for m, v in values.items() if previous.get(m) != v}
        gone = [m for m in previous if m not in values]
        if changed:
            await conn.execute(
                queries.LATEST_SET,
                {
                    "player_id": player_id,
                    "metric_ids": list(changed),
                    "values": list(changed.values()),
                },
            )
        if gone:
            await conn.execute(queries.LATEST_DROP, {"player_id": player_id, "metric_ids": gone})

    async def _register(
        self, conn: AsyncConnection, new: list[tuple[str, str, MetricKind]]
    ) -> None:
        """A name never seen before (a new boss) becomes a metric instead of an error."""
        async with conn.cursor() as cur:
            await cur.executemany(queries.SEED_METRIC, [(k, n, kind.value) for k, n, kind in new])
        await self._load_metric_ids(conn)
        log.warning("metrics_registered keys=%s", ",".join(sorted({k for k, _, _ in new})))


def _plain_unranked(entry) -> bool:
    _, _, kind, rank, level, amount = entry
    if kind is MetricKind.SKILL:
        return rank == -1 and level == 1 and amount == -1
    return rank == -1 and amount == -1


PROGRESS_KIND = {type_: kind for kind, type_ in PROGRESS_KINDS.items()}


def _who(player_key: str, display_name: str, mode, at) -> dict:
    return {
        "player_key": player_key,
        "display_name": display_name,
        "mode": GameMode(mode),
        "observed_at": at,
    }


def _mode_change(who: dict, old, new) -> AccountTypeChanged:
    old, new = GameMode(old), GameMode(new)
    if old is GameMode.HARDCORE and new is GameMode.IRONMAN:
        reason = "hardcore_death"
    elif new is GameMode.DE_IRONED:
        reason = "de_ironed"
    else:
        reason = "changed"
    return AccountTypeChanged(**who, from_mode=old, to_mode=new, reason=reason)
