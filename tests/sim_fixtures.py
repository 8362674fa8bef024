"""Fixtures of the simulator tests: a population, a clock the test moves, the ASGI app on that
clock, and an httpx client talking to it in-process (no network); and the simulator as a process
of its own, for the tests of other services."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from services.local import free_port, wait_for_port
from sim.app import SimApp, create_app
from sim.population import DEFAULT_EPOCH, Population

T0 = DEFAULT_EPOCH + 400 * 86_400.0 + 3_600  # mid-morning, so a tick never crosses midnight


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def population() -> Population:
    return Population(400, seed=1)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def app(population: Population, clock: Clock) -> SimApp:
    return create_app(population, clock=clock)


@pytest.fixture
async def sim(app: SimApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


@contextlib.contextmanager
def simulator_process(*args: str) -> Iterator[str]:
    """`osrs-diff sim ARGS` on a free port until the block ends; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "sim", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 20, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
