"""Wiring shared by the three FastStream services: the broker, start-up declaration, `main`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from faststream import FastStream
from faststream.message import StreamMessage
from faststream.nats import NatsBroker

from shared import logs
from shared.settings import Settings, get_settings

DRAIN_TIMEOUT_S = 3  # of the shutdown grace's reserve for closing (Settings.work_grace_s)


def create_broker(settings: Settings, name: str) -> NatsBroker:
    broker_log = logging.getLogger(f"osrs.{name}.broker")
    broker_log.setLevel(logging.WARNING)  # FastStream's own chatter; its errors still show
    return NatsBroker(
        settings.nats_url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        drain_timeout=DRAIN_TIMEOUT_S,
        logger=broker_log,
        log_level=logging.DEBUG,  # FastStream logs every message at this level
    )


async def raw_body(msg: StreamMessage) -> bytes | list[bytes]:
    """A FastStream decoder that hands the handler the bytes as they arrived: every service
    decodes its messages itself, so that a malformed one can be dead-lettered."""
    return msg.body


def main_for(service: str, create_app: Callable[[Settings], FastStream]) -> Callable[[], None]:
    """A console-script entry point: settings and logs once, then run until SIGINT/SIGTERM."""

    def main() -> None:
        settings = get_settings()
        logs.configure(service, settings.log_level, settings.log_format)
        app = create_app(settings)
        asyncio.run(app.run(log_level=logging.DEBUG))

    return main
