"""The API's Prometheus metrics: request latency by route template and status, and /metrics.

Litestar's own `litestar.plugins.prometheus` also labels by route template (`group_path=True`),
but it records a request refused by a middleware (401 from the token check, 429 from the login
throttle) as a 200: the refusal is an exception that passes it before any response is sent.
This middleware records the exception's status instead, and sits outside every other one."""

from __future__ import annotations

import time

from litestar import Response, get
from litestar.config.app import AppConfig
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

REQUEST_SECONDS = Histogram(
    "osrs_api_request_duration_seconds",
    "API requests, until the response is sent, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except HTTPException as exc:
            status = exc.status_code  # answered by the exception handler outside
            raise
        finally:
            # The template (`/v1/players/{name}`), never the path: one series per route.
            route = scope.get("path_template") or "unrouted"
            REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )


def outermost(app_config: AppConfig) -> AppConfig:
    """An on_app_init hook, listed after the auth one: puts RequestMetrics outside it."""
    app_config.middleware.insert(0, DefineMiddleware(RequestMetrics))
    return app_config


@get(
    "/metrics",
    summary="Prometheus metrics (keep it off the public network)",
    tags=["health"],
    exclude_from_auth=True,
    include_in_schema=False,
    media_type=CONTENT_TYPE_LATEST,
)
async def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
