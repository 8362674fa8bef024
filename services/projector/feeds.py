"""The projector's pull loops: one per stream, batches applied in order, acked after commit.

These loops use nats-py directly rather than FastStream's batch subscriber: FastStream 0.7.8
accumulates a partial batch over several fetches and drops it when a later fetch ends with
`asyncio.TimeoutError` (it only catches nats-py's own TimeoutError), leaving those messages to
come back after `ack_wait`, behind newer ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
import psycopg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.projector.projection import Projector
from shared import subjects

log = logging.getLogger("osrs.projector")

BATCH = 256
FETCH_WAIT_S = 1.0
FEEDS = (  # stream, subject filter, durable consumer
    (subjects.EVT_STREAM, "osrs.evt.>", subjects.PROJECTOR_EVT_CONSUMER),
    (subjects.STATUS_STREAM, f"{subjects.STATUS_PREFIX}.*", subjects.PROJECTOR_STATUS_CONSUMER),
)


def consumer_config(durable: str, subject: str, checkpoint: int) -> ConsumerConfig:
    """The checkpoint in Postgres is the truth; the consumer is only a cursor made from it.

    At most two unacked batches (max_ack_pending): the one being applied and the next one,
    fetched meanwhile. Batches are applied one after the other by one loop, so a batch being
    retried is never overtaken by a later one."""
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=checkpoint + 1,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=60,
        max_deliver=-1,
        max_ack_pending=2 * BATCH,
    )


async def reset_consumers(js: JetStreamContext, checkpoints: dict[str, int]) -> None:
    """Each consumer restarts right after the last applied sequence, so messages an earlier
    process fetched but never applied cannot be overtaken by later ones."""
    for stream, subject, durable in FEEDS:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, durable)
        await js.add_consumer(stream, consumer_config(durable, subject, checkpoints.get(stream, 0)))


class FeedLoops:
    def __init__(self, js: JetStreamContext, projector: Projector, on_applied=lambda: None) -> None:
        self.js = js
        self.projector = projector
        self.on_applied = on_applied  # after each committed batch (wakes the outbox relay)
        self.stopping = False
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for stream, subject, durable in FEEDS:
            self.tasks.append(
                asyncio.create_task(self.consume(stream, subject, durable), name=f"feed-{stream}")
            )

    async def stop(self, grace_s: float = 10.0) -> None:
        """Let each loop finish the batch in hand, then cancel what is left."""
        self.stopping = True
        _, pending = await asyncio.wait(self.tasks, timeout=grace_s) if self.tasks else ((), ())
        for task in pending:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def consume(self, stream: str, subject: str, durable: str) -> None:
        sub = await self.js.pull_subscribe(subject, durable=durable, stream=stream)
        # The next batch is fetched while this one is applied: the round trip to NATS and the
        # parsing of its messages fill the time this loop waits for Postgres.
        ahead = asyncio.create_task(self._fetch(sub, stream))
        try:
            while not self.stopping:
                msgs = await ahead
                ahead = asyncio.create_task(self._fetch(sub, stream))
                if msgs:
                    await self.project(stream, msgs)
        finally:
            # A batch fetched ahead and not applied stays unacked: the next projector to start
            # makes its consumer afresh from the checkpoint (reset_consumers).
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                await ahead
            # A pull subscription left open makes the connection's drain wait for it.
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _fetch(self, sub, stream: str) -> list[Msg]:
        """The next batch; none after FETCH_WAIT_S with nothing new, or NATS away."""
        try:
            return await sub.fetch(BATCH, timeout=FETCH_WAIT_S)
        except (TimeoutError, nats.errors.TimeoutError):
            return []  # nothing new
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.NoRespondersError,
            nats.js.errors.ServiceUnavailableError,
        ) as exc:
            log.warning("fetch_failed stream=%s reason=%r", stream, exc)
            await asyncio.sleep(1.0)
            return []

    async def project(self, stream: str, msgs: list[Msg]) -> None:
        """Apply a batch; while the database is away keep the batch (and the order) and retry."""
        attempt = 0
        while True:
            try:
                applied = await self.projector.apply_batch(stream, msgs, careful=attempt > 0)
                break
            except psycopg.OperationalError as exc:
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
            for msg in msgs:
                await msg.in_progress()
            await asyncio.sleep(delay)
        self.on_applied()
        for msg in msgs:
            await msg.ack()
        log.debug("batch_applied stream=%s size=%d applied=%d", stream, len(msgs), applied)
