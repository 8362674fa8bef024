"""Serving an ASGI app (the API, the simulator) under uvicorn."""

from __future__ import annotations

import signal

import uvicorn


def serve_asgi(app, host: str, port: int, grace_s: float | None = None) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully (requests in flight get `grace_s`
    to finish) and exit with status 0.

    uvicorn re-raises the signal it caught once it has shut down; the no-op handlers installed
    here receive it, so the process ends normally like the FastStream services do."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=grace_s,
    )
    uvicorn.Server(config).run()
