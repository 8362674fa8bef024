"""`osrs-diff rebuild`: every read model built anew from OSRS_EVT, the event log.

The new models are built in a schema of their own while the API goes on serving the current ones
and the live projector goes on applying new events. Then, in one transaction that holds the live
projector's checkpoint table (so no batch of it is half-applied), the new models catch up with
it and the schemas are swapped by renaming: the new one becomes `public`, the old one
`osrs_replaced` (dropped at the end unless kept). Tables that do not come from OSRS_EVT (users
and their tokens and API keys, the latest fetch statuses and the fetch counts from OSRS_STATUS)
move over as they are.

Statements resolve table names when they run, so the API and the live projector read and write
the new tables from their next statement on; the live projector resumes after the rebuilt
checkpoint, which is never behind its own."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import psycopg
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from services.projector.projection import Projector
from shared import db, subjects
from shared import nats as natsx
from shared.settings import Settings

log = logging.getLogger("osrs.rebuild")

STAGING = "osrs_rebuild"
REPLACED = "osrs_replaced"
# Not derived from OSRS_EVT. The API's tokens and keys before the users they reference: they are
# dropped from the staging schema in this order.
CARRIED = (
    "refresh_tokens",
    "revoked_tokens",
    "api_keys",
    "users",
    "fetch_status",
    "fetch_outcomes",
    "outbox",  # progress events already derived, sent or not: a rebuild derives none
)
BATCH = 1000

Progress = Callable[[int, int], None]  # (events read, events in the log)


@dataclass
class Report:
    events: int  # messages read from OSRS_EVT
    dead: int  # events that could not be decoded or applied (dead-lettered when first seen)
    seconds: float
    kept_old: bool


class RebuildError(RuntimeError):
    pass


async def rebuild(
    settings: Settings,
    *,
    keep_old: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    before_swap: Callable[[], object] | None = None,
) -> Report:
    """Rebuild, swap, and report. `before_swap` runs once the staged models are caught up with
    the log as it was at the start (tests use it to race the live projector)."""
    started = time.monotonic()
    url = settings.database_url
    await asyncio.to_thread(db.migrate, url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await _fresh_staging(admin)
    staging_url = make_conninfo(url, options=f"-c search_path={STAGING}")
    await asyncio.to_thread(db.migrate, staging_url)

    dead: list[str] = []

    async def dead_letter(msg: Msg, reason: str) -> None:
        dead.append(reason)  # the live projector dead-lettered it when it first came
        log.warning("rebuild_skipped seq=%s reason=%s", msg.metadata.sequence.stream, reason)

    pool = AsyncConnectionPool(staging_url, min_size=1, max_size=2, open=False, name="osrs-rebuild")
    await pool.open(wait=True, timeout=30)
    nc = await natsx.connect(settings, "rebuild")
    try:
        async with pool.connection() as conn:
            await conn.execute(COPY_METRICS)  # the same ids: every reader's cache stays right
        projector = Projector(pool, dead_letter, outbox=False)
        await projector.seed_metrics()
        js = nc.jetstream()
        await natsx.declare(js, settings)
        log_state = (await js.stream_info(subjects.EVT_STREAM)).state
        target = log_state.last_seq
        if not force:
            await _check_log(url, log_state)
        feed = await js.pull_subscribe(
            "osrs.evt.>",
            stream=subjects.EVT_STREAM,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=300,
            ),
        )
        reader = _Reader(feed, projector, target, progress)
        await reader.read_until(target)
        if before_swap is not None:
            await _maybe_await(before_swap())
        async with await psycopg.AsyncConnection.connect(url) as admin:
            async with admin.transaction():
                # Wait for the live projector's batch in flight, and hold the next one.
                await admin.execute("LOCK TABLE public.projector_checkpoints IN EXCLUSIVE MODE")
                live = dict(
                    await (
                        await admin.execute("SELECT stream, last_seq FROM projector_checkpoints")
                    ).fetchall()
                )
                await reader.read_until(live.get(subjects.EVT_STREAM, 0))
                await _swap(admin, live)
            if not keep_old:
                await admin.execute(
                    sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(REPLACED))
                )
                await admin.commit()
        return Report(reader.read, len(dead), time.monotonic() - started, keep_old)
    finally:
        await pool.close()
        await nc.drain()


COPY_METRICS = f"""
INSERT INTO {STAGING}.metrics (id, key, name, kind, first_seen_at)
SELECT id, key, name, kind, first_seen_at FROM public.metrics;
SELECT setval(pg_get_serial_sequence('{STAGING}.metrics', 'id'),
              (SELECT COALESCE(max(id), 0) + 1 FROM {STAGING}.metrics), false);
"""


async def _check_log(url: str, log_state) -> None:
    """Refuse to replace the models with less than they hold: an empty or cut log (a new NATS
    server, a stream deleted by hand) would rebuild them empty."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        (players,) = await (await conn.execute("SELECT count(*) FROM public.players")).fetchone()
    if log_state.messages == 0 and players:
        raise RebuildError(
            f"OSRS_EVT is empty but the read models hold {players} players: is this the right "
            "NATS server? (--force rebuilds anyway)"
        )
    if log_state.first_seq > 1:
        raise RebuildError(
            f"OSRS_EVT starts at sequence {log_state.first_seq}: earlier events are gone and "
            "the models would lose them (--force rebuilds anyway)"
        )


async def _fresh_staging(admin: psycopg.AsyncConnection) -> None:
    """An empty staging schema (a rebuild that died left one behind), and no replaced one."""
    for schema in (STAGING, REPLACED):
        await admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
    await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(STAGING)))


async def _swap(admin: psycopg.AsyncConnection, live: dict[str, int]) -> None:
    staging, replaced = sql.Identifier(STAGING), sql.Identifier(REPLACED)
    for table in CARRIED:
        await admin.execute(sql.SQL("DROP TABLE {}.{}").format(staging, sql.Identifier(table)))
    for stream, last_seq in live.items():
        if stream != subjects.EVT_STREAM:  # the other feeds go on where they were
            await admin.execute(
                sql.SQL(
                    "INSERT INTO {}.projector_checkpoints (stream, last_seq) VALUES (%s, %s)"
                ).format(staging),
                (stream, last_seq),
            )
    await admin.execute(sql.SQL("ALTER SCHEMA public RENAME TO {}").format(replaced))
    await admin.execute(sql.SQL("ALTER SCHEMA {} RENAME TO public").format(staging))
    for table in CARRIED:
        await admin.execute(
            sql.SQL("ALTER TABLE {}.{} SET SCHEMA public").format(replaced, sql.Identifier(table))
        )
    await admin.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")


class _Reader:
    """Reads OSRS_EVT in order and applies it to the staged models."""

    def __init__(self, feed, projector: Projector, total: int, progress: Progress | None):
        self.feed = feed
        self.projector = projector
        self.total = total
        self.progress = progress
        self.read = 0
        self.position = 0  # the last stream sequence read

    async def read_until(self, seq: int) -> None:
        while self.position < seq:
            try:
                # Exactly up to `seq`: the live projector goes on from there, and derives the
                # progress events of what follows.
                msgs = await self.feed.fetch(min(BATCH, seq - self.position), timeout=5)
            except (TimeoutError, nats.errors.TimeoutError):
                raise RebuildError(
                    f"OSRS_EVT ended at sequence {self.position}, expected {seq}"
                ) from None
            try:
                await self.projector.apply_batch(subjects.EVT_STREAM, msgs)
            except psycopg.OperationalError:
                raise
            except Exception:  # noqa: BLE001 - again one by one, skipping what cannot apply
                await self.projector.apply_batch(subjects.EVT_STREAM, msgs, careful=True)
            self.position = msgs[-1].metadata.sequence.stream
            self.read += len(msgs)
            self.total = max(self.total, self.position)
            if self.progress:
                self.progress(self.read, self.total)


async def _maybe_await(value) -> None:
    if asyncio.iscoroutine(value):
        await value
