"""The outbox relay: publishes the progress events the projector wrote to the `outbox` table,
in id order, each with `Nats-Msg-Id` = its row id, and marks them sent.

Exactly once, whatever crashes: a row is marked sent only after JetStream acknowledged it, so
nothing is lost; a row published but not marked (a crash in between) is published again with
the same id, which JetStream drops inside the duplicate window; and at start the relay reads the
id of the last message in OSRS_PROGRESS and marks every row up to it as sent, since rows go out
one at a time in id order, so even a relay that was down for longer than the window repeats
nothing."""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
import psycopg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge
from psycopg_pool import AsyncConnectionPool

from shared import subjects

log = logging.getLogger("osrs.relay")

BATCH = 500
IDLE_WAIT_S = 1.0
PRUNE_EVERY_S = 600.0
KEEP_SENT = "1 day"

UNSENT = "SELECT id, subject, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT %s"
MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE id = ANY(%s)"
MARK_SENT_UP_TO = "UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL AND id <= %s"
PRUNE = f"DELETE FROM outbox WHERE sent_at < now() - interval '{KEEP_SENT}'"
BACKLOG = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"

PROGRESS_RELAYED = Counter(
    "osrs_progress_events_relayed_total",
    "Progress events published to OSRS_PROGRESS by the outbox relay, by kind",
    ["kind"],
)
OUTBOX_BACKLOG = Gauge("osrs_outbox_backlog", "Progress events in the outbox not published yet")


class OutboxRelay:
    def __init__(self, pool: AsyncConnectionPool, js: JetStreamContext) -> None:
        self.pool = pool
        self.js = js
        self.wake = asyncio.Event()  # set by the projector after each committed batch
        self.stopping = False
        self.sent = 0
        self.unsure = False  # a batch failed midway: JetStream may hold rows not marked sent

    async def catch_up_with_stream(self) -> int:
        """Mark sent every row up to the last one JetStream holds; returns that id (0: none)."""
        info = await self.js.stream_info(subjects.PROGRESS_STREAM)
        if not info.state.last_seq:
            return 0
        try:
            last = await self.js.get_msg(subjects.PROGRESS_STREAM, info.state.last_seq)
        except NotFoundError:  # expired or deleted: the duplicate window is the guard
            return 0
        msg_id = (last.headers or {}).get("Nats-Msg-Id", "")
        if not msg_id.isdigit():
            return 0
        async with self.pool.connection() as conn:
            await conn.execute(MARK_SENT_UP_TO, (int(msg_id),))
        return int(msg_id)

    async def run(self) -> None:
        await self._retrying(self.catch_up_with_stream)
        pruned_at = time.monotonic()
        while True:
            sent = await self._retrying(self.relay_once)
            if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                await self._retrying(self._prune)
                pruned_at = time.monotonic()
            if sent < BATCH:
                if self.stopping:
                    return  # the outbox is empty: what the last batches wrote went out
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), IDLE_WAIT_S)
                except TimeoutError:
                    pass

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows in id order; returns how many went out."""
        if self.unsure:
            await self.catch_up_with_stream()
            self.unsure = False
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(UNSENT, (BATCH,))).fetchall()
        sent: list[int] = []
        try:
            for row_id, subject, payload in rows:
                await self.js.publish(
                    subject,
                    bytes(payload),
                    stream=subjects.PROGRESS_STREAM,
                    headers={"Nats-Msg-Id": str(row_id)},
                )
                sent.append(row_id)
                PROGRESS_RELAYED.labels(subject.rsplit(".", 1)[-1]).inc()
        except BaseException:
            self.unsure = True
            raise
        finally:  # what JetStream acknowledged is marked, even when the batch stops midway
            if sent:
                async with self.pool.connection() as conn:
                    await conn.execute(MARK_SENT, (sent,))
                self.sent += len(sent)
        return len(sent)

    async def sample_backlog(self) -> None:
        """Refresh the backlog gauge (every few seconds, from the metrics refresher)."""
        async with self.pool.connection() as conn:
            (count,) = await (await conn.execute(BACKLOG)).fetchone()
        OUTBOX_BACKLOG.set(count)

    async def _prune(self) -> int:
        async with self.pool.connection() as conn:
            return (await conn.execute(PRUNE)).rowcount

    async def _retrying(self, step):
        delay = 0.5
        while True:
            try:
                return await step()
            except (psycopg.OperationalError, nats.errors.Error, TimeoutError) as exc:
                if self.stopping:
                    return 0
                log.warning("relay_retry in=%.1fs reason=%r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
