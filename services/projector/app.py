"""The projector: durable batch consumers on OSRS_EVT and OSRS_STATUS feeding Postgres."""

from __future__ import annotations

import asyncio
import logging

import psycopg
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, PullSub
from faststream.nats.annotations import NatsMessage
from nats.aio.msg import Msg

from services.projector.projection import Projector
from shared import db, subjects
from shared import nats as natsx
from shared.service import create_broker, main_for, raw_body
from shared.settings import Settings

log = logging.getLogger("osrs.projector")

BATCH = 256
# One unacked batch at a time keeps the stream order: a batch that is retried is never
# overtaken by a later one (the checkpoint would then skip it).
CONSUMER = ConsumerConfig(ack_wait=60, max_deliver=-1, max_ack_pending=BATCH)


def create_app(settings: Settings) -> FastStream:
    broker = create_broker(settings, "projector")
    app = FastStream(broker, logger=log)
    pool = db.pool(settings.database_url, min_size=1, max_size=4, name="osrs-projector")

    async def dead_letter(msg: Msg, reason: str) -> None:
        await natsx.dead_letter(broker.connection.jetstream(), "projector", msg, reason)

    projector = Projector(pool, dead_letter)

    @app.on_startup
    async def start() -> None:
        await asyncio.to_thread(db.migrate, settings.database_url)
        await pool.open(wait=True, timeout=30)
        await projector.seed_metrics()
        await broker.connect()
        await natsx.declare(broker.connection.jetstream(), settings)
        log.info("projector_ready")

    @app.after_shutdown
    async def close_pool() -> None:
        await pool.close()

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
        @broker.subscriber(
            subject,
            stream=JStream(stream, declare=False),
            durable=durable,
            pull_sub=PullSub(batch_size=BATCH, timeout=1.0, batch=True),
            config=CONSUMER,
            ack_policy=AckPolicy.MANUAL,
            decoder=raw_body,
        )
        async def on_batch(body: list[bytes], msg: NatsMessage) -> None:
            await project(stream, msg)

    subscribe(subjects.EVT_STREAM, "osrs.evt.>", subjects.PROJECTOR_EVT_CONSUMER)
    subscribe(
        subjects.STATUS_STREAM, f"{subjects.STATUS_PREFIX}.*", subjects.PROJECTOR_STATUS_CONSUMER
    )

    return app


main = main_for("projector", create_app)
