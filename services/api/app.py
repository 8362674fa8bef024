"""The API: Litestar, one psycopg pool, one NATS connection, JWT and API key auth."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import psycopg
from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.logging.config import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from psycopg import AsyncConnection

from services.api import queries, telemetry
from services.api.api_keys import ApiKeysController
from services.api.auth import AuthController, ensure_admin
from services.api.boards import AchievementsController, LeaderboardsController, stats
from services.api.hardening import cors_config, security_headers
from services.api.history import HistoryController
from services.api.players import PlayersController
from services.api.ratelimit import LoginThrottle, LoginThrottleMiddleware
from services.api.records import RecordsController
from services.api.schemas import Health
from services.api.shedding import (
    QUIET_ERRORS,
    Admission,
    configure_pool,
    database_unavailable,
    limit_in_flight,
)
from services.api.tokens import AccessTokens, TokenAuth
from services.api.users import UsersController
from shared import db, logs
from shared import nats as natsx
from shared.serving import serve_asgi
from shared.settings import Settings, get_settings

log = logging.getLogger("osrs.api")


class MetricCache:
    """(id, key, kind) of every metric, in registry order; reloaded when an id is unknown."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, str]] = []
        self.ids: set[int] = set()

    async def get(self, conn: AsyncConnection, needed: Iterable[int]) -> list[tuple[int, str, str]]:
        if not self.rows or not self.ids.issuperset(needed):
            self.rows = await (await conn.execute(queries.METRICS)).fetchall()
            self.ids = {row[0] for row in self.rows}
        return self.rows


@get("/health/live", summary="The process is up", tags=["health"], exclude_from_auth=True)
async def live() -> Health:
    return Health(status="live")


@get("/health/ready", summary="Postgres and NATS answer", tags=["health"], exclude_from_auth=True)
async def ready(state: State) -> Response[Health]:
    checks = {}
    try:
        async with asyncio.timeout(2):
            async with state.pool.connection() as conn:
                await conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["postgres"] = f"error: {type(exc).__name__}"
    checks["nats"] = "ok" if state.nc.is_connected else "error: disconnected"
    ok = all(v == "ok" for v in checks.values())
    return Response(
        Health(status="ready" if ok else "not_ready", checks=checks), status_code=200 if ok else 503
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    tokens = AccessTokens.from_settings(settings)  # refuses to build without a signing key
    # A fixed size: grown on demand (from 2), the pool served 64 concurrent requests of
    # GET /v1/players/{name} at ~60 % of the rate a full one does (bench/api_load.md).
    pool = db.pool(settings.database_url, min_size=10, max_size=10, name="osrs-api")
    # Autocommit: a plain read is one round trip, not BEGIN, the query and COMMIT. Every API
    # write of more than one statement runs in `conn.transaction()`, which still makes it one
    # transaction; under READ COMMITTED the reads gain nothing from an implicit one.
    pool.kwargs["autocommit"] = True
    configure_pool(pool, settings)  # a bounded wait for a connection, a statement timeout
    login_throttle = LoginThrottle.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await asyncio.to_thread(db.migrate, settings.database_url)
        await pool.open(wait=True, timeout=30)
        nc = await natsx.connect(settings, "api")
        js = nc.jetstream()
        await natsx.declare(js, settings)
        app.state.update(
            nc=nc,
            js=js,
            cooldowns=await natsx.declare_bucket(js, natsx.cooldown_bucket(settings)),
        )
        await ensure_admin(pool, settings)
        log.info("api_ready host=%s port=%s", settings.api_host, settings.api_port)
        try:
            yield
        finally:
            await nc.drain()
            await pool.close()

    return Litestar(
        route_handlers=[
            AuthController,
            ApiKeysController,
            PlayersController,
            HistoryController,
            RecordsController,
            AchievementsController,
            LeaderboardsController,
            stats,
            UsersController,
            live,
            ready,
            telemetry.metrics,
        ],
        lifespan=[lifespan],
        middleware=[DefineMiddleware(LoginThrottleMiddleware, throttle=login_throttle)],
        before_send=[security_headers(settings)],
        cors_config=cors_config(settings),
        request_max_body_size=settings.max_body_bytes,
        # Uncaught errors are logged through the root logger: key=value lines like the rest.
        logging_config=LoggingConfig(
            configure_root_logger=False,
            log_exceptions="always",
            # A refused request is the client's error, not ours: no stack trace for it.
            # Nor for the overload answers (services/api/shedding.py): they are counted.
            disable_stack_trace={400, 401, 403, 404, 405, 409, 413, 422, 429, 503, *QUIET_ERRORS},
            handlers={},
            formatters={},
            loggers={"litestar": {"level": "INFO", "handlers": [], "propagate": True}},
        ),
        exception_handlers={psycopg.OperationalError: database_unavailable},
        # Each hook puts its middleware outside those before it: the request metrics, the
        # load shedding, then the token check.
        on_app_init=[
            TokenAuth(tokens, pool).on_app_init,
            limit_in_flight(Admission.from_settings(settings)),
            telemetry.outermost,
        ],
        state=State(
            {
                "settings": settings,
                "pool": pool,
                "tokens": tokens,
                "metrics": MetricCache(),
                "login_throttle": login_throttle,
            }
        ),
        openapi_config=OpenAPIConfig(
            title="osrs-diff",
            version="0.1.0",
            path="/schema",
            description="Old School RuneScape progress, stored only when it changed.",
        ),
    )


def main() -> None:
    settings = get_settings()
    logs.configure("api", settings.log_level, settings.log_format)
    app = create_app(settings)
    # The modules and the app live as long as the process: out of the collector's sight, a full
    # collection under load takes ~1 ms instead of 40-150 ms that stall every request in flight
    # (bench/api_load.md).
    gc.freeze()
    serve_asgi(app, settings.api_host, settings.api_port, grace_s=settings.work_grace_s())
