"""Fixtures of the simulator tests: a population, a clock the test moves, the ASGI app on that
clock, and an httpx client talking to it in-process (no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

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
