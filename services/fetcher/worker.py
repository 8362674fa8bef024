"""The fetcher's pull loop: a command is pulled only when a worker is free to start on it, and
kept alive from that moment, so no command waits unheard and comes back as a duplicate.

(FastStream's concurrent pull subscriber pulls a whole batch ahead and lets the commands that
wait for a worker go without heartbeats; while a breaker holds the workers, they are
redelivered and fetched twice.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from services.fetcher.client import TRANSIENT
from services.fetcher.handler import FetchHandler
from shared import logs, subjects
from shared import nats as natsx
from shared.events import FetchRequested, decode

log = logging.getLogger("osrs.fetcher")

MAX_ATTEMPTS = 6  # for a command whose handling raises; transient outcomes retry forever
HEARTBEAT_S = 10.0  # well inside the consumer's ack wait
ACK_WAIT_S = 30


def consumer_config() -> ConsumerConfig:
    # No server-side `backoff`: with it nats-server 2.15 ignores the delay of a second nak.
    # No max_deliver: a command is never stranded; the handler decides when to give up.
    return ConsumerConfig(
        durable_name=subjects.FETCHER_CONSUMER,
        filter_subject=f"{subjects.FETCH_PREFIX}.*",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_deliver=-1,
    )


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next delivery of a command after `attempt` failed ones (5 s .. 10 min)."""
    delay = min(600.0, 5.0 * 3 ** (attempt - 1))
    return max(delay, min(retry_after or 0.0, 3600.0))


@contextlib.asynccontextmanager
async def keep_alive(msg: Msg) -> AsyncIterator[None]:
    """Tell JetStream the command is being worked on every few seconds. The first beat waits
    too: the command was delivered a moment ago, so its ack wait has only just begun, and most
    fetches are acked long before a beat is due (one publish a fetch saved)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class Worker:
    def __init__(self, js: JetStreamContext, handler: FetchHandler, concurrency: int) -> None:
        self.js = js
        self.handler = handler
        self.free = asyncio.Semaphore(concurrency)
        self.stopping = False
        self.fetching = False  # the pull loop is waiting on the server, not for a free worker
        self.in_flight: set[asyncio.Task] = set()
        self.loop: asyncio.Task | None = None

    def start(self) -> None:
        self.loop = asyncio.create_task(self._pull(), name="fetcher-pull")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop pulling, give the fetches in hand time to finish (each acks or naks its
        command), then cancel the rest: their commands are nak'ed for another fetcher."""
        self.stopping = True
        if self.loop:
            if not self.fetching:
                self.loop.cancel()  # waiting for a free worker: nothing pulled to lose
            await asyncio.gather(self.loop, return_exceptions=True)
        if self.in_flight:
            _, pending = await asyncio.wait(self.in_flight, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _pull(self) -> None:
        sub = await self.js.pull_subscribe(
            f"{subjects.FETCH_PREFIX}.*",
            durable=subjects.FETCHER_CONSUMER,
            stream=subjects.CMD_STREAM,
            config=consumer_config(),
        )
        try:
            while not self.stopping:
                await self.free.acquire()
                if self.stopping:
                    break
                try:
                    self.fetching = True
                    (msg,) = await sub.fetch(1, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    self.free.release()
                    continue
                except nats.errors.Error as exc:
                    self.free.release()
                    log.warning("pull_failed reason=%r", exc)
                    await asyncio.sleep(1.0)
                    continue
                finally:
                    self.fetching = False
                task = asyncio.create_task(self._serve(msg))
                self.in_flight.add(task)
                task.add_done_callback(self._done)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    def _done(self, task: asyncio.Task) -> None:
        self.in_flight.discard(task)
        self.free.release()

    async def _serve(self, msg: Msg) -> None:
        meta = msg.metadata
        msg_id = (msg.headers or {}).get("Nats-Msg-Id") or f"{meta.stream}:{meta.sequence.stream}"
        with logs.bound(msg_id=msg_id):
            await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        attempt = msg.metadata.num_delivered
        try:
            cmd = decode(msg.data, FetchRequested)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await natsx.dead_letter(
                self.js, "fetcher", msg, f"undecodable FetchRequested: {exc}", kind="undecodable"
            )
            await msg.ack()
            return
        try:
            async with keep_alive(msg):  # a fetch may wait out the breaker or the rate limit
                with logs.bound(player_key=cmd.player_key):
                    fetched = await self.handler.handle(cmd)
        except asyncio.CancelledError:
            # Stopping past the grace period: another fetcher takes the command at once.
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception as exc:  # a bug or NATS trouble: never drop the command
            log.exception("fetch_failed player_key=%s attempt=%d", cmd.player_key, attempt)
            if attempt >= MAX_ATTEMPTS:
                await natsx.dead_letter(
                    self.js,
                    "fetcher",
                    msg,
                    f"failed {attempt} times: {exc!r}",
                    kind="failed_repeatedly",
                )
                await msg.ack()
            else:
                await msg.nak(delay=retry_delay(attempt))
            return
        if fetched.completed.outcome in TRANSIENT:
            # Never dropped: tried again later and later (at most every 10 min) until served.
            await msg.nak(delay=retry_delay(attempt, fetched.retry_after))
        else:
            await msg.ack()
