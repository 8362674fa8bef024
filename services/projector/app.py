"""The projector: one active process (the others stand by) applying OSRS_EVT and OSRS_STATUS to
the Postgres read models."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

import nats.errors
import psycopg
from faststream import FastStream
from nats.aio.msg import Msg
from psycopg_pool import PoolTimeout

from services.projector.feeds import FEEDS, FeedLoops, reset_consumers
from services.projector.projection import Projector
from services.projector.relay import OutboxRelay
from shared import db, telemetry
from shared import nats as natsx
from shared.service import create_broker, main_for
from shared.settings import Settings

log = logging.getLogger("osrs.projector")

LOCK_ID = 0x05C5D1F0  # pg_advisory_lock id: one active projector, the others stand by
LOCK_CHECK_S = 1.0
LOCK_RETRY_S = 0.5


def create_app(settings: Settings) -> FastStream:
    broker = create_broker(settings, "projector")
    app = FastStream(broker, logger=log)
    pool = db.pool(settings.database_url, min_size=1, max_size=4, name="osrs-projector")

    async def dead_letter(msg: Msg, reason: str) -> None:
        kind = "undecodable" if reason.startswith("cannot decode") else "cannot_apply"
        await natsx.dead_letter(broker.connection.jetstream(), "projector", msg, reason, kind=kind)

    projector = Projector(pool, dead_letter)
    state: dict = {}  # the lock's connection, the feed loops, the task that watches the lock
    telemetry.instrument(
        app,
        settings,
        "projector",
        checks={
            "nats": telemetry.nats_answers(lambda: broker.connection),
            "postgres": telemetry.postgres_answers(pool),
        },
        samplers=lambda: [
            telemetry.consumer_lag(
                broker.connection.jetstream(), [(stream, durable) for stream, _, durable in FEEDS]
            ),
            state["relay"].sample_backlog,
        ],
    )

    @app.on_startup
    async def start() -> None:
        await asyncio.to_thread(db.migrate, settings.database_url)
        await pool.open(wait=True, timeout=30)
        await broker.connect()  # before waiting as a standby: its readiness is NATS's too
        state["lock"] = await lead(settings.database_url)
        await projector.seed_metrics()
        js = broker.connection.jetstream()
        await natsx.declare(js, settings)
        checkpoints = await projector.checkpoints()
        await reset_consumers(js, checkpoints)
        state["relay"] = OutboxRelay(pool, js)
        state["feeds"] = FeedLoops(js, projector, on_applied=state["relay"].wake.set)
        # What start-up made lives as long as the process: out of the collector's full scans,
        # which otherwise walk every imported module's objects while batches are applied.
        gc.freeze()
        log.info("projector_ready checkpoints=%s", checkpoints)

    async def watch_lock() -> None:
        """A lost lock connection (Postgres went away, or the connection did) means another
        projector may now be active: stop applying, wait to hold the lock again (as a standby
        while another projector holds it), then go on from the checkpoints."""
        while True:
            await asyncio.sleep(LOCK_CHECK_S)
            try:
                await state["lock"].execute("SELECT 1")
            except psycopg.Error as exc:
                log.warning("projector_lock_lost reason=%s: pausing", str(exc).strip())
                await state["feeds"].stop(grace_s=0)  # nothing in hand can commit now
                with contextlib.suppress(psycopg.Error):
                    await state["lock"].close()
                await take_back()

    async def take_back() -> None:
        """The lock again, then the feeds from the checkpoints; each step retried until the
        database and NATS answer (a pooled connection may still be one to the old server)."""
        while True:
            try:
                state["lock"] = await lead(settings.database_url, retry_s=LOCK_RETRY_S)
                await resume()
                return
            except (psycopg.Error, PoolTimeout, nats.errors.Error) as exc:
                log.warning("projector_resume_retry in=%.1fs reason=%r", LOCK_RETRY_S, exc)
                if "lock" in state:
                    with contextlib.suppress(psycopg.Error):
                        await state["lock"].close()
                await asyncio.sleep(LOCK_RETRY_S)

    def watch_ended(task: asyncio.Task) -> None:
        """The lock watch never ends by itself: if it fails, stop rather than stay paused."""
        if not task.cancelled() and task.exception() is not None:
            log.error("projector_lock_watch_failed: stopping", exc_info=task.exception())
            app.exit()

    async def resume() -> None:
        js = broker.connection.jetstream()
        checkpoints = await projector.checkpoints()
        await reset_consumers(js, checkpoints)
        state["feeds"] = FeedLoops(js, projector, on_applied=state["relay"].wake.set)
        state["feeds"].start()
        log.info("projector_resumed checkpoints=%s", checkpoints)

    @app.after_startup
    async def begin() -> None:
        state["feeds"].start()
        state["relaying"] = asyncio.create_task(state["relay"].run(), name="outbox-relay")
        state["watch"] = asyncio.create_task(watch_lock(), name="projector-lock")
        state["watch"].add_done_callback(watch_ended)

    @app.on_shutdown
    async def stop() -> None:
        deadline = asyncio.get_running_loop().time() + settings.work_grace_s()
        if "watch" in state:
            state["watch"].cancel()
        if "feeds" in state:
            await state["feeds"].stop(settings.work_grace_s())
        if "relaying" in state:  # what the last batches wrote goes out before the exit
            state["relay"].stopping = True
            state["relay"].wake.set()
            left = max(1.0, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(state["relaying"], left)
            except TimeoutError:
                log.warning("relay_stop_timeout: the rest goes out at the next start")

    @app.after_shutdown
    async def close() -> None:
        await pool.close()
        if "lock" in state:
            await state["lock"].close()

    return app


async def lead(database_url: str, retry_s: float | None = None) -> psycopg.AsyncConnection:
    """Hold the projector lock on a connection of its own; a second projector waits here as a
    standby until the first one's connection is gone. With `retry_s`, a database that does not
    answer is tried again every `retry_s` seconds instead of failing."""
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                database_url, autocommit=True, application_name="osrs-projector-lock"
            )
            break
        except psycopg.OperationalError as exc:
            if retry_s is None:
                raise
            log.warning("projector_lock_retry in=%.1fs reason=%s", retry_s, str(exc).strip())
            await asyncio.sleep(retry_s)
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,))).fetchone()
    if not row[0]:
        log.info("projector_standby waiting for the active projector to stop")
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        # The lock is free, yet the projector that held it may be alive (only its connection
        # went) and pulling from the consumers this one is about to make afresh: give it the
        # time to notice and stop its feeds, or a batch it takes would be skipped for good.
        await asyncio.sleep(2 * LOCK_CHECK_S)
    log.info("projector_active")
    return conn


main = main_for("projector", create_app)
