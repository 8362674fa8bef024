"""The fetcher: a durable pull consumer on OSRS_CMD, shared by every fetcher replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, PullSub
from faststream.nats.annotations import NatsMessage
from nats.aio.msg import Msg

from services.fetcher.client import HiscoresClient, new_http_client
from services.fetcher.handler import RETRYABLE, FetchHandler
from services.fetcher.resilience import CircuitBreaker, RateLimiter, RetryPolicy
from shared import nats as natsx
from shared import subjects
from shared.events import FetchRequested, decode
from shared.service import create_broker, main_for, raw_body
from shared.settings import Settings

log = logging.getLogger("osrs.fetcher")

MAX_ATTEMPTS = 6
HEARTBEAT_S = 15.0  # well inside the consumer's 30 s ack wait


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next delivery of a command after `attempt` failed ones (5 s .. 10 min)."""
    delay = min(600.0, 5.0 * 3 ** (attempt - 1))
    return max(delay, retry_after or 0.0)


@contextlib.asynccontextmanager
async def keep_alive(msg: Msg) -> AsyncIterator[None]:
    """Tell JetStream the command is still being worked on, so it is not redelivered."""

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


def create_app(
    settings: Settings,
    *,
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
) -> FastStream:
    broker = create_broker(settings, "fetcher")
    app = FastStream(broker, logger=log)
    concurrency = settings.fetch_concurrency
    http = new_http_client(max_connections=concurrency, timeout_s=settings.hiscores_timeout)
    hiscores = HiscoresClient(
        settings.hiscores_url,
        http,
        limiter=RateLimiter(settings.fetch_rate, concurrency),
        breaker=breaker or CircuitBreaker(),
        policy=policy,
    )
    state: dict[str, FetchHandler] = {}

    @app.on_startup
    async def declare() -> None:
        await broker.connect()
        js = broker.connection.jetstream()
        await natsx.declare(js, settings)
        hashes = await js.key_value(subjects.FETCH_HASHES_BUCKET)
        state["handler"] = FetchHandler(hiscores, js, hashes)
        log.info(
            "fetcher_ready hiscores_url=%s rate=%s/s concurrency=%d",
            settings.hiscores_url,
            settings.fetch_rate,
            concurrency,
        )

    @app.after_shutdown
    async def close_http() -> None:
        await http.aclose()

    @broker.subscriber(
        f"{subjects.FETCH_PREFIX}.*",
        stream=JStream(subjects.CMD_STREAM, declare=False),
        durable=subjects.FETCHER_CONSUMER,
        pull_sub=PullSub(batch_size=concurrency, timeout=1.0),
        # A command whose fetcher died comes back after the ack wait; a failed one is nak'd with
        # a growing delay (retry_delay). No server-side `backoff`: with it, nats-server 2.15
        # ignores the delay of a second nak. The handler dead-letters a command that failed
        # MAX_ATTEMPTS times, before the server's own bound.
        config=ConsumerConfig(ack_wait=30, max_deliver=MAX_ATTEMPTS + 4),
        ack_policy=AckPolicy.MANUAL,
        decoder=raw_body,
        max_workers=concurrency,
    )
    async def on_fetch_requested(body: bytes, msg: NatsMessage) -> None:
        raw = msg.raw_message
        attempt = raw.metadata.num_delivered
        js = broker.connection.jetstream()
        try:
            cmd = decode(body, FetchRequested)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await natsx.dead_letter(js, "fetcher", raw, f"undecodable FetchRequested: {exc}")
            await msg.ack()
            return
        try:
            async with keep_alive(raw):  # a fetch may wait out the breaker or the rate limit
                fetched = await state["handler"].handle(cmd)
        except Exception as exc:  # a bug or NATS trouble: never drop the command
            log.exception("fetch_failed player_key=%s attempt=%d", cmd.player_key, attempt)
            if attempt >= MAX_ATTEMPTS:
                await natsx.dead_letter(js, "fetcher", raw, f"failed {attempt} times: {exc!r}")
                await msg.ack()
            else:
                await msg.nack(delay=retry_delay(attempt))
            return
        if fetched.completed.outcome in RETRYABLE and attempt < MAX_ATTEMPTS:
            await msg.nack(delay=retry_delay(attempt, fetched.retry_after))
        else:
            await msg.ack()

    return app


main = main_for("fetcher", create_app)
