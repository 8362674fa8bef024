"""The fetcher: a durable pull consumer on OSRS_CMD, shared by every fetcher replica."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from faststream import FastStream

from services.fetcher.client import HiscoresClient, new_http_client
from services.fetcher.handler import FetchHandler
from services.fetcher.resilience import CircuitBreaker, RateLimiter, RetryPolicy
from services.fetcher.worker import Worker
from shared import nats as natsx
from shared import subjects, telemetry
from shared.service import create_broker, main_for
from shared.settings import Settings

log = logging.getLogger("osrs.fetcher")


def create_app(
    settings: Settings,
    *,
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
) -> FastStream:
    broker = create_broker(settings, "fetcher")
    app = FastStream(broker, logger=log)
    state: dict[str, Worker] = {}
    telemetry.instrument(
        app,
        settings,
        "fetcher",
        checks={"nats": telemetry.nats_answers(lambda: broker.connection)},
        samplers=lambda: [
            telemetry.consumer_lag(
                state["worker"].js, [(subjects.CMD_STREAM, subjects.FETCHER_CONSUMER)]
            )
        ],
    )
    concurrency = settings.fetch_concurrency
    http = new_http_client(max_connections=concurrency, timeout_s=settings.hiscores_timeout)
    hiscores = HiscoresClient(
        settings.hiscores_url,
        http,
        limiter=RateLimiter(settings.fetch_rate, concurrency),
        breaker=breaker or CircuitBreaker(host=urlsplit(settings.hiscores_url).netloc),
        policy=policy,
    )

    @app.on_startup
    async def declare() -> None:
        await broker.connect()
        js = broker.connection.jetstream()
        await natsx.declare(js, settings)
        hashes = await js.key_value(subjects.FETCH_HASHES_BUCKET)
        state["worker"] = Worker(js, FetchHandler(hiscores, js, hashes), concurrency)
        log.info(
            "fetcher_ready hiscores_url=%s rate=%s/s concurrency=%d",
            settings.hiscores_url,
            settings.fetch_rate,
            concurrency,
        )

    @app.after_startup
    async def begin() -> None:
        state["worker"].start()

    @app.on_shutdown
    async def stop() -> None:
        if "worker" in state:
            await state["worker"].stop(settings.work_grace_s())

    @app.after_shutdown
    async def close_http() -> None:
        await http.aclose()

    return app


def main() -> None:
    """`osrs-fetcher`: on uvloop where it is installed (uvicorn[standard] brings it). Every
    fetch is a dozen socket writes and reads (HTTP, NATS); uvloop's event loop and transports
    take about a third less CPU for them than asyncio's."""
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    main_for("fetcher", create_app)()
