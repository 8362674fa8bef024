"""Overload: answer 503 with Retry-After at once rather than let requests pile up and time out.

Two limits, both per process:

- at most `OSRS_API_MAX_INFLIGHT` requests are served at a time, `OSRS_API_MAX_QUEUED` more wait
  (first come, first served) at most `OSRS_API_QUEUE_TIMEOUT_S` for a slot, and the rest are
  refused before any work is done for them. Past its capacity a process serves no more requests,
  only slower ones: so what it admits it still serves quickly, and the clients it refuses learn
  it at once. The queue is short on purpose (128: about a tenth of a second of work at one
  core's ~1,300 requests/s): under lasting overload a long first-come-first-served queue only
  holds requests that have waited long (bench/api_overload.md: with room for 1,024, at twice the
  capacity the answers took seconds and 40 % of the requests passed the client's 5 s timeout).
- Postgres: a request waits at most `OSRS_API_POOL_TIMEOUT_S` for a connection, and an API query
  runs at most `OSRS_API_STATEMENT_TIMEOUT_S` (slow queries cannot hold the pool forever);
  either answers 503, as does a database that is away.

The health probes and /metrics are never refused: the process is alive while it sheds, and an
operator sees the shedding (`osrs_api_shed_requests_total`) while it happens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import msgspec
import psycopg
from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import Counter, Gauge
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from shared.settings import Settings

log = logging.getLogger("osrs.api.shedding")

RETRY_AFTER_S = 1
NEVER_SHED = frozenset({"/health/live", "/health/ready", "/metrics"})
# Expected under overload, counted and logged once a second: no stack trace for each.
QUIET_ERRORS = frozenset({PoolTimeout, psycopg.errors.QueryCanceled})
LOG_EVERY_S = 1.0

SHED = Counter(
    "osrs_api_shed_requests_total",
    "API requests answered 503 because the process or Postgres is overloaded, by reason: "
    "overloaded (no slot and the queue full), queue_timeout (no slot in time), pool_timeout "
    "(no Postgres connection in time), statement_timeout (a query ran too long), database "
    "(Postgres unreachable)",
    ["reason"],
)
IN_FLIGHT = Gauge("osrs_api_requests_in_flight", "API requests being served (not the probes)")
QUEUED = Gauge("osrs_api_requests_queued", "API requests waiting for a slot")


class Admission:
    """At most `max_inflight` holders of a slot and `max_queued` waiters, served in order."""

    def __init__(self, max_inflight: int, max_queued: int, queue_timeout_s: float) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        return cls(settings.api_max_inflight, settings.api_max_queued, settings.api_queue_timeout_s)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_enter(self) -> bool:
        """Take a free slot now, without waiting."""
        if self.in_flight < self.max_inflight:
            self.in_flight += 1
            return True
        return False

    async def wait(self) -> str | None:
        """Wait in the queue for a slot: None once one is held, else why there is none."""
        if len(self._waiters) >= self.max_queued:
            return "overloaded"
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await waiter
            return None
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return None  # handed a slot as the time ran out: it is ours
            self._forget(waiter)
            return "queue_timeout"
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a slot nobody will use: pass it on
            else:
                self._forget(waiter)
            raise

    def leave(self) -> None:
        """Give the slot to the first waiter still waiting, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already taken off by leave()
            self._waiters.remove(waiter)


def _overloaded_body(detail: str) -> bytes:
    return msgspec.json.encode({"status_code": 503, "detail": detail})


_OVERLOADED_BODY = _overloaded_body(f"the API is overloaded; retry in {RETRY_AFTER_S} s")
_OVERLOADED_START = {
    "type": "http.response.start",
    "status": 503,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_OVERLOADED_BODY)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode()),
    ],
}


class ShedLoad:
    """Pure ASGI: admits a request to the app or answers 503 itself, without reading the body
    or checking a credential, so a refusal costs little of the capacity it protects."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        admission = self.admission
        if not admission.try_enter():
            reason = await admission.wait()
            if reason is not None:
                SHED.labels(reason).inc()
                _log_sometimes(reason, scope)
                # A copy of the headers: a before_send hook may add to the list.
                await send({**_OVERLOADED_START, "headers": list(_OVERLOADED_START["headers"])})
                await send({"type": "http.response.body", "body": _OVERLOADED_BODY})
                return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.leave()


def limit_in_flight(admission: Admission):
    """An on_app_init hook; listed before telemetry.outermost, so that the request metrics see
    the requests it refuses."""
    IN_FLIGHT.set_function(lambda: admission.in_flight)
    QUEUED.set_function(lambda: admission.queued)

    def install(app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(0, DefineMiddleware(ShedLoad, admission=admission))
        return app_config

    return install


def configure_pool(pool: AsyncConnectionPool, settings: Settings) -> None:
    """Bound the wait for a connection and the run time of every query on the API's pool."""
    pool.timeout = settings.api_pool_timeout_s  # the default of pool.connection()
    statement_timeout_ms = max(1, round(settings.api_statement_timeout_s * 1000))
    given = conninfo_to_dict(pool.conninfo).get("options", "")  # kept: kwargs replace them
    pool.kwargs["options"] = f"{given} -c statement_timeout={statement_timeout_ms}".strip()


def database_unavailable(request: Request, exc: psycopg.OperationalError) -> Response:
    """The exception handler for psycopg's OperationalError: a 503 with Retry-After."""
    if isinstance(exc, PoolTimeout):
        reason, detail = "pool_timeout", "the database is busy"
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        reason, detail = "statement_timeout", "the database is busy"
    else:
        reason, detail = "database", "the database is unavailable"
    SHED.labels(reason).inc()
    _log_sometimes(reason, request.scope, exc)
    return Response(
        {"status_code": 503, "detail": f"{detail}; retry in {RETRY_AFTER_S} s"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


_last_logged: dict[str, float] = {}


def _log_sometimes(reason: str, scope: Scope, exc: Exception | None = None) -> None:
    """One warning per reason a second at most: under overload there are thousands."""
    now = time.monotonic()
    if now - _last_logged.get(reason, -LOG_EVERY_S) < LOG_EVERY_S:
        return
    _last_logged[reason] = now
    log.warning("request_shed reason=%s path=%s error=%r", reason, scope["path"], exc)
