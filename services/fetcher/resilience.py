"""How the fetcher treats the hiscores: a request rate and concurrency it never exceeds,
backoff with jitter between attempts, and a circuit breaker that stops all fetching during an
outage, letting one probe through now and then."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable

import msgspec
from prometheus_client import Gauge

log = logging.getLogger("osrs.fetcher")


class RetryPolicy(msgspec.Struct, frozen=True):
    attempts: int = 3  # HTTP attempts per fetch before the command is redelivered later
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0  # a longer Retry-After: give up now, redeliver later
    confirm_404_s: float = 2.0  # a 404 is asked again after this before it counts

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, base * 2^(attempt-1)], capped."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)


class RateLimiter:
    """At most `rate` requests per second started, and `concurrency` in flight, per process."""

    def __init__(self, rate: float, concurrency: int, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate
        self.clock = clock
        self._next_start = 0.0
        self._slots = asyncio.Semaphore(concurrency)

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        now = self.clock()
        start = max(now, self._next_start)
        self._next_start = start + self.interval
        if start > now:
            try:
                await asyncio.sleep(start - now)
            except BaseException:
                self._slots.release()  # cancelled while waiting for its turn
                raise

    async def __aexit__(self, *exc) -> None:
        self._slots.release()


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The gauge's values: the larger, the less gets through.
BREAKER_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
BREAKER_STATE = Gauge(
    "osrs_circuit_breaker_state",
    "The fetcher's circuit breaker for a hiscores host: 0 closed, 1 half-open, 2 open",
    ["host"],
)


class CircuitBreaker:
    """Trips on an outage page or on `threshold` failures in a row; while open every fetch
    waits; after the cool-down one probe goes through (half-open): a good answer closes it, a
    bad one opens it again for twice as long (up to `max_cooldown_s`)."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        max_cooldown_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        host: str = "hiscores",
    ) -> None:
        self.host = host
        self.threshold = threshold
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.cooldown_s = cooldown_s
        self.open_until = 0.0
        self.trips = 0
        self._probe_in_flight = False
        self._changed = asyncio.Condition()

    @property
    def state(self) -> BreakerState:
        return self._state

    @state.setter
    def state(self, state: BreakerState) -> None:
        self._state = state
        BREAKER_STATE.labels(self.host).set(BREAKER_LEVELS[state])

    async def acquire(self) -> bool:
        """Wait until a request may go; True when it goes as the half-open probe."""
        async with self._changed:
            while True:
                if self.state is BreakerState.CLOSED:
                    return False
                now = self.clock()
                if self.state is BreakerState.OPEN and now >= self.open_until:
                    self.state = BreakerState.HALF_OPEN
                if self.state is BreakerState.HALF_OPEN and not self._probe_in_flight:
                    self._probe_in_flight = True
                    return True
                wait = max(0.05, self.open_until - now) if self.state is BreakerState.OPEN else 1.0
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=wait)
                except TimeoutError:
                    pass

    async def record(self, *, ok: bool, outage: bool, probe: bool) -> None:
        async with self._changed:
            if probe:
                self._probe_in_flight = False
            elif self.state is not BreakerState.CLOSED:
                return  # a request let through before the trip says nothing about now
            if ok:
                if self.state is not BreakerState.CLOSED:
                    log.info("breaker_closed after=%d trips", self.trips)
                self.state, self.failures, self.cooldown_s = (
                    BreakerState.CLOSED,
                    0,
                    self.base_cooldown_s,
                )
            else:
                self.failures += 1
                if probe:
                    self.cooldown_s = min(self.max_cooldown_s, self.cooldown_s * 2)
                    self._open()
                elif self.state is BreakerState.CLOSED and (
                    outage or self.failures >= self.threshold
                ):
                    self._open()
            self._changed.notify_all()

    async def abandon(self, probe: bool) -> None:
        """A request that never got its answer (cancelled): free the probe's turn."""
        if probe:
            async with self._changed:
                self._probe_in_flight = False
                self._changed.notify_all()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self.open_until = self.clock() + self.cooldown_s
        self.trips += 1
        log.warning("breaker_open for=%.0fs failures=%d", self.cooldown_s, self.failures)
