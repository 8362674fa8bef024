"""Applies events to the Postgres read models: each batch in one transaction together with the
stream position it reaches, so at-least-once delivery gives exactly-once effects."""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec
import psycopg
from nats.aio.msg import Msg
from prometheus_client import Counter
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.projector import observed, queries
from shared.events import (
    AccountTypeChanged,
    FetchCompleted,
    HiscoreObserved,
    Message,
    PlayerTracked,
    PlayerUntracked,
    PlayerUpdated,
    ProgressEvent,
    TrackingChanged,
    UnknownSubject,
    decode_on,
)
from shared.metrics import KNOWN_METRICS, MetricKind
from shared.modes import GameMode

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
        self.metrics = observed.Metrics()
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
        self.metrics.load(await (await conn.execute(queries.METRIC_IDS)).fetchall())

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
            self.metrics.forget()  # ids registered in the rolled-back transaction are gone
            raise

    async def _apply_batch(self, stream: str, msgs: Sequence[Msg], careful: bool) -> int:
        written = 0
        events: list[Message] = []
        async with self.pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(queries.LOCK_CHECKPOINT, (stream,))).fetchone()
            last_seq, tables = row
            if not self.metrics.ids or tables != self.tables:  # new tables: reload the ids
                await self._load_metric_ids(conn)
                self.tables = tables
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq <= last_seq:
                    continue  # redelivered after a commit whose ack was lost
                last_seq = seq
                try:
                    event = decode_on(msg.subject, msg.data)
                except (msgspec.DecodeError, msgspec.ValidationError, UnknownSubject) as exc:
                    await self.dead_letter(msg, f"cannot decode: {exc}")
                    continue
                if not careful:
                    events.append(event)
                    continue
                try:
                    async with conn.transaction():
                        written += await self.apply_many(conn, [event])
                except psycopg.OperationalError:
                    raise  # the database is away: retry the whole batch later
                except Exception as exc:  # noqa: BLE001 - this event can never be applied
                    await self.dead_letter(msg, f"cannot apply: {exc!r}")
                    continue
                events.append(event)
            if not careful:
                written += await self.apply_many(conn, events)
            await conn.execute(queries.SAVE_CHECKPOINT, (last_seq, stream))
        kinds = collections.Counter(type(event).__name__ for event in events)
        for kind, count in kinds.items():  # counted once committed
            EVENTS_APPLIED.labels(stream, kind).inc(count)
        OBSERVATIONS_WRITTEN.inc(written)
        return len(events)

    async def apply(self, conn: AsyncConnection, event: Message, seq: int) -> bool:
        """Apply one event; True when it stored a new observation."""
        return await self.apply_many(conn, [event]) > 0

    async def apply_many(self, conn: AsyncConnection, events: Sequence[Message]) -> int:
        """Apply events in their order, consecutive observations and fetch outcomes many at a
        time; returns how many new observations were stored."""
        written = 0
        for type_, group in itertools.groupby(events, type):
            if type_ is HiscoreObserved:
                written += await self._observed(conn, list(group))
            elif type_ is FetchCompleted:
                await self._fetched(conn, list(group))
            else:
                for event in group:
                    await self._player_event(conn, event)
        return written

    async def _observed(self, conn: AsyncConnection, events: list[HiscoreObserved]) -> int:
        try:
            prepared = {id(event): observed.prepare(self.metrics, event) for event in events}
        except KeyError:  # a name never seen before: rare, so looked for only then
            unknown = observed.unknown_metrics(self.metrics, events)
            if not unknown:
                raise
            await self._register(conn, sorted(unknown))
            prepared = {id(event): observed.prepare(self.metrics, event) for event in events}
        written = 0
        for run in observed.distinct_runs(events):
            written += await observed.store(
                conn, self.metrics, [prepared[id(e)] for e in run], self.outbox
            )
        return written

    async def _fetched(self, conn: AsyncConnection, events: list[FetchCompleted]) -> None:
        """The latest outcome per player (ties: the later event) and a count of every one."""
        latest: dict[str, FetchCompleted] = {}
        for event in events:
            kept = latest.get(event.player_key)
            if kept is None or kept.at <= event.at:
                latest[event.player_key] = event
        rows = [
            (
                e.player_key,
                e.mode.value,
                e.at,
                e.outcome.value,
                e.http_status,
                e.detail,
                e.not_found_streak,
            )
            for e in latest.values()
        ]
        counted = [(e.at, e.outcome.value) for e in events]
        async with conn.pipeline():
            await conn.execute(queries.FETCH_COMPLETED, [list(c) for c in zip(*rows, strict=True)])
            await conn.execute(queries.FETCH_COUNTED, [list(c) for c in zip(*counted, strict=True)])

    async def _player_event(self, conn: AsyncConnection, event: Message) -> None:
        match event:
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

    async def _publish(self, conn: AsyncConnection, event: ProgressEvent) -> None:
        """Into the outbox, in this transaction; the relay publishes it after the commit."""
        if self.outbox:
            await observed.Writes(outbox=[event]).send(conn)

    async def _register(
        self, conn: AsyncConnection, new: list[tuple[str, str, MetricKind]]
    ) -> None:
        """A name never seen before (a new boss) becomes a metric instead of an error."""
        async with conn.cursor() as cur:
            await cur.executemany(queries.SEED_METRIC, [(k, n, kind.value) for k, n, kind in new])
        await self._load_metric_ids(conn)
        log.warning("metrics_registered keys=%s", ",".join(sorted({k for k, _, _ in new})))


_who = observed.who_of


def _mode_change(who: dict, old, new) -> AccountTypeChanged:
    old, new = GameMode(old), GameMode(new)
    if old is GameMode.HARDCORE and new is GameMode.IRONMAN:
        reason = "hardcore_death"
    elif new is GameMode.DE_IRONED:
        reason = "de_ironed"
    else:
        reason = "changed"
    return AccountTypeChanged(**who, from_mode=old, to_mode=new, reason=reason)
