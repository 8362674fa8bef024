"""Prometheus metrics: those that several services share, and each worker's HTTP server for
/metrics, /ready and /live. (The API serves /metrics on its own port; each service defines its
other metrics beside the code that moves them. Every name starts `osrs_`.)"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from faststream import FastStream
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from psycopg_pool import AsyncConnectionPool

from shared.settings import Settings

log = logging.getLogger("osrs.telemetry")

REFRESH_S = 5.0  # how often gauges read from NATS or Postgres are refreshed
READY_TIMEOUT_S = 3.0

DEAD_LETTERS = Counter(
    "osrs_dead_letters_total",
    "Messages parked on OSRS_DEAD, by the service that gave up and why",
    ["service", "reason"],
)
CONSUMER_PENDING = Gauge(
    "osrs_consumer_pending_messages",
    "Messages a durable consumer has not been delivered yet (its lag)",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "osrs_consumer_ack_pending_messages",
    "Messages delivered to a durable consumer and not acknowledged yet",
    ["stream", "consumer"],
)

Check = Callable[[], Awaitable[object]]  # raises (or times out) when a dependency does not answer
Sampler = Callable[[], Awaitable[None]]


def consumer_lag(js: JetStreamContext, consumers: Iterable[tuple[str, str]]) -> Sampler:
    """A sampler of the pending and ack-pending messages of these (stream, durable) consumers."""
    consumers = tuple(consumers)

    async def sample() -> None:
        for stream, durable in consumers:
            info = await js.consumer_info(stream, durable)
            CONSUMER_PENDING.labels(stream, durable).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(stream, durable).set(info.num_ack_pending or 0)

    return sample


async def refresh_every(interval_s: float, samplers: Iterable[Sampler]) -> None:
    """Run each sampler now and every `interval_s` until cancelled; one that fails (NATS or
    Postgres away) leaves its gauges as they were and is tried again next time."""
    samplers = tuple(samplers)
    while True:
        for sample in samplers:
            try:
                await sample()
            except Exception as exc:  # noqa: BLE001 - readiness reports the outage
                log.debug("sample_failed sampler=%s reason=%r", sample.__qualname__, exc)
        await asyncio.sleep(interval_s)


def nats_answers(connection: Callable[[], Client]) -> Check:
    """The NATS server answers a ping on the connection (not merely: a socket is open)."""

    async def check() -> None:
        nc = connection()
        if not nc.is_connected:  # reconnecting: flush() would not tell
            raise ConnectionError("not connected")
        await nc.flush(timeout=READY_TIMEOUT_S)

    return check


def postgres_answers(pool: AsyncConnectionPool) -> Check:
    async def check() -> None:
        async with pool.connection(timeout=READY_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")

    return check


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


class MetricsServer:
    """/metrics (prometheus_client's exposition), /live (200 while the process serves) and
    /ready (200 when every check passes, else 503; JSON naming each check; 503 from the moment
    the service is told to stop), served from a thread so that a scrape never waits for the
    event loop; /ready runs its checks on the loop, so a loop that is stuck is not ready
    either."""

    def __init__(self, host: str, port: int, checks: dict[str, Check]) -> None:
        self.host = host
        self.port = port
        self.checks = checks
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.httpd = None
        self._metrics = make_wsgi_app()

    def start(self) -> None:
        """Listen, from the running event loop; on a busy port say so and go on without."""
        self.loop = asyncio.get_running_loop()
        family = socket.getaddrinfo(self.host, self.port, proto=socket.IPPROTO_TCP)[0][0]
        server_class = type("Server", (ThreadingWSGIServer,), {"address_family": family})
        try:
            self.httpd = make_server(
                self.host, self.port, self._app, server_class, handler_class=_Quiet
            )
        except OSError as exc:
            log.error("metrics_server_failed host=%s port=%d reason=%r", self.host, self.port, exc)
            return
        threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics_serving url=http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self.httpd is not None:
            await asyncio.to_thread(self.httpd.shutdown)
            self.httpd.server_close()
            self.httpd = None

    def readiness(self) -> tuple[bool, dict]:
        """Called from the server's thread."""
        if self.stopping:
            return False, {"status": "stopping"}
        future = asyncio.run_coroutine_threadsafe(self._check_all(), self.loop)
        try:
            checks = future.result(READY_TIMEOUT_S + 1)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:  # a stuck or closed loop
            future.cancel()
            return False, {"status": "not_ready", "checks": {"loop": f"error: {exc!r}"}}
        ok = all(result == "ok" for result in checks.values())
        return ok, {"status": "ready" if ok else "not_ready", "checks": checks}

    async def _check_all(self) -> dict[str, str]:
        results = {}
        for name, check in self.checks.items():
            try:
                async with asyncio.timeout(READY_TIMEOUT_S):
                    await check()
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                results[name] = f"error: {type(exc).__name__}"
        return results

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)
        if path == "/live":
            ok, body = True, {"status": "live"}
        elif path == "/ready":
            ok, body = self.readiness()
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"/metrics, /ready or /live\n"]
        status = "200 OK" if ok else "503 Service Unavailable"
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        start_response(status, headers)
        return [json.dumps(body).encode()]


def instrument(
    app: FastStream,
    settings: Settings,
    service: str,
    checks: dict[str, Check],
    samplers: Callable[[], Iterable[Sampler]] = tuple,
) -> MetricsServer:
    """Give a FastStream worker its metrics server: listening first thing at start-up, ready
    whenever its checks pass, not ready from the moment it is told to stop. `samplers` is
    called once the worker has started; what it returns refreshes gauges every few seconds.

    Call it before the worker registers its own hooks, so that these run first."""
    server = MetricsServer(settings.metrics_host, settings.metrics_port_for(service), checks)
    refreshing: list[asyncio.Task] = []

    @app.on_startup
    async def serve_metrics() -> None:
        if server.port:
            server.start()

    @app.after_startup
    async def started() -> None:
        refreshing.append(asyncio.create_task(refresh_every(REFRESH_S, samplers())))

    @app.on_shutdown
    async def stopping() -> None:
        server.stopping = True
        for task in refreshing:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @app.after_shutdown
    async def stop_serving() -> None:
        await server.stop()

    return server
