"""The projector: durable batch consumers on OSRS_EVT and OSRS_STATUS feeding Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, PullSub
from faststream.nats.annotations import NatsMessage
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as NatsAckPolicy
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from services.projector.projection import Projector
from shared import db, subjects
from shared import nats as natsx
from shared.service import create_broker, main_for, raw_body
from shared.settings import Settings

log = logging.getLogger("osrs.projector")

BATCH = 256
LOCK_ID = 0x05C5D1F0  # pg_advisory_lock id: one active projector, the others stand by
LOCK_CHECK_S = 2.0
FEEDS = (  # stream, subject filter, durable consumer
    (subjects.EVT_STREAM, "osrs.evt.>", subjects.PROJECTOR_EVT_CONSUMER),
    (subjects.STATUS_STREAM, f"{subjects.STATUS_PREFIX}.*", subjects.PROJECTOR_STATUS_CONSUMER),
)


def consumer_config(durable: str, subject: str, checkpoint: int) -> ConsumerConfig:
    """The checkpoint in Postgres is the truth; the consumer is only a cursor made from it.

    At most one unacked batch (max_ack_pending) keeps the stream order while this process
    lives: a batch being retried is never overtaken by a later one."""
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=checkpoint + 1,
        ack_policy=NatsAckPolicy.EXPLICIT,
        ack_wait=60,
        max_deliver=-1,
        max_ack_pending=BATCH,
    )


def create_app(settings: Settings) -> FastStream:
    broker = create_broker(settings, "projector")
    app = FastStream(broker, logger=log)
    pool = db.pool(settings.database_url, min_size=1, max_size=4, name="osrs-projector")

    async def dead_letter(msg: Msg, reason: str) -> None:
        await natsx.dead_letter(broker.connection.jetstream(), "projector", msg, reason)

    projector = Projector(pool, dead_letter)
    leadership: dict = {}  # the lock's connection, and the task that watches it

    @app.on_startup
    async def start() -> None:
        await asyncio.to_thread(db.migrate, settings.database_url)
        await pool.open(wait=True, timeout=30)
        leadership["lock"] = await lead(settings.database_url)
        await projector.seed_metrics()
        await broker.connect()
        js = broker.connection.jetstream()
        await natsx.declare(js, settings)
        # Messages fetched but not applied by an earlier process must not be overtaken by later
        # ones: each consumer restarts right after the last applied sequence.
        checkpoints = await projector.checkpoints()
        for stream, subject, durable in FEEDS:
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(stream, durable)
            config = consumer_config(durable, subject, checkpoints.get(stream, 0))
            await js.add_consumer(stream, config)
        log.info("projector_ready checkpoints=%s", checkpoints)

    async def watch_lock() -> None:
        """A lost lock connection means another projector may now be active: stop, and let the
        supervisor restart this one as a standby."""
        while True:
            await asyncio.sleep(LOCK_CHECK_S)
            try:
                await leadership["lock"].execute("SELECT 1")
            except psycopg.Error as exc:
                log.error("projector_lock_lost reason=%s: stopping", exc)
                app.exit()
                return

    @app.after_startup
    async def begin_watch() -> None:
        leadership["watch"] = asyncio.create_task(watch_lock(), name="projector-lock")

    @app.on_shutdown
    async def stop_watch() -> None:
        if "watch" in leadership:
            leadership["watch"].cancel()

    @app.after_shutdown
    async def close_pool() -> None:
        await pool.close()
        if "lock" in leadership:
            await leadership["lock"].close()

    async def project(stream: str, msg: NatsMessage) -> None:
        """Apply a batch; while the database is away keep the batch (and the order) and retry."""
        msgs: list[Msg] = msg.raw_message
        attempt = 0
        while True:
            try:
                applied = await projector.apply_batch(stream, msgs, careful=attempt > 0)
                break
            except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
                reason = f"database unavailable: {exc}"
            except Exception as exc:  # noqa: BLE001 - retried carefully, then dead-lettered
                log.exception("batch_failed stream=%s size=%d", stream, len(msgs))
                reason = repr(exc)
            attempt += 1
            delay = min(30.0, 0.5 * 2**attempt)
            log.warning(
                "batch_retry stream=%s attempt=%d in=%.1fs reason=%s",
                stream,
                attempt,
                delay,
                reason,
            )
            for m in msgs:
                await m.in_progress()
            await asyncio.sleep(delay)
        for m in msgs:
            await m.ack()
        log.debug("batch_applied stream=%s size=%d applied=%d", stream, len(msgs), applied)

    def subscribe(stream: str, subject: str, durable: str) -> None:
        # Binds to the durable consumer that `start` made from the checkpoint.
        @broker.subscriber(
            subject,
            stream=JStream(stream, declare=False),
            durable=durable,
            pull_sub=PullSub(batch_size=BATCH, timeout=1.0, batch=True),
            ack_policy=AckPolicy.MANUAL,
            decoder=raw_body,
        )
        async def on_batch(body: list[bytes], msg: NatsMessage) -> None:
            await project(stream, msg)

    for feed in FEEDS:
        subscribe(*feed)

    return app


async def lead(database_url: str) -> psycopg.AsyncConnection:
    """Hold the projector lock on a connection of its own; a second projector waits here as a
    standby until the first one's connection is gone."""
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,))).fetchone()
    if not row[0]:
        log.info("projector_standby waiting for the active projector to stop")
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
    log.info("projector_active")
    return conn


main = main_for("projector", create_app)
