"""Retries, backoff, the 404 confirmation, the CSV fallback, the rate limit and the circuit
breaker: pure logic against a scripted hiscores (the NATS side is in test_fetcher.py)."""

import asyncio
import time

import pytest

from services.fetcher.client import HiscoresClient
from services.fetcher.resilience import BreakerState, CircuitBreaker, RateLimiter, RetryPolicy
from shared.events import FetchOutcome
from shared.modes import GameMode
from tests.hiscores_double import DATA, MID, NOT_FOUND, OUTAGE, ScriptedHiscores

FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, confirm_404_s=0.01, attempts=3)
JSON = "application/json"
CSV = (DATA / "synthetic_mid.index_lite.ws").read_bytes()


def client(hiscores: ScriptedHiscores, **kwargs) -> HiscoresClient:
    kwargs.setdefault("policy", FAST)
    kwargs.setdefault("breaker", CircuitBreaker(cooldown_s=0.2, max_cooldown_s=0.4))
    return HiscoresClient("http://hiscores", hiscores.client(), **kwargs)


async def lookup(c: HiscoresClient):
    return await c.lookup("Synth Mid", GameMode.REGULAR)


async def test_5xx_and_timeouts_are_retried_then_data_is_returned():
    hiscores = ScriptedHiscores(
        (503, b"", "text/plain"), (502, b"", "text/plain"), (200, MID, JSON)
    )
    answer = await lookup(client(hiscores))
    assert answer.hiscores is not None and len(hiscores.requests) == 3


async def test_after_the_last_attempt_the_outcome_is_unavailable():
    hiscores = ScriptedHiscores((500, b"", "text/plain"))
    answer = await lookup(client(hiscores))
    assert answer.outcome is FetchOutcome.UNAVAILABLE and len(hiscores.requests) == 3


async def test_429_honours_a_short_retry_after_and_gives_up_on_a_long_one():
    short = ScriptedHiscores((429, b"", "text/plain", {"Retry-After": "0.05"}), (200, MID, JSON))
    started = time.monotonic()
    assert (await lookup(client(short))).hiscores is not None
    assert time.monotonic() - started >= 0.05
    long = ScriptedHiscores((429, b"", "text/plain", {"Retry-After": "3600"}))
    answer = await lookup(client(long))
    assert answer.outcome is FetchOutcome.RATE_LIMITED and answer.retry_after == 3600
    assert len(long.requests) == 1  # redelivered later instead of holding the command an hour


async def test_a_404_is_confirmed_once_more():
    confirmed = ScriptedHiscores((404, NOT_FOUND, "text/html"))
    assert (await lookup(client(confirmed))).outcome is FetchOutcome.NOT_FOUND
    assert len(confirmed.requests) == 2
    spurious = ScriptedHiscores((404, NOT_FOUND, "text/html"), (200, MID, JSON))
    assert (await lookup(client(spurious))).hiscores is not None


async def test_a_garbled_json_body_falls_back_to_the_csv():
    hiscores = ScriptedHiscores(
        (200, MID[:100], JSON),
        (200, MID[:100], JSON),
        (200, MID[:100], JSON),
        (200, CSV, "text/plain"),
    )
    answer = await lookup(client(hiscores))
    assert answer.hiscores is not None and "from the CSV" in answer.detail
    assert hiscores.requests[-1].url.path.endswith("index_lite.ws")


async def test_a_wrong_content_type_with_good_json_is_data():
    answer = await lookup(client(ScriptedHiscores((200, MID, "text/html"))))
    assert answer.hiscores is not None


async def test_an_outage_page_trips_the_breaker_and_costs_a_handful_of_requests():
    hiscores = ScriptedHiscores((200, OUTAGE, "text/html"))
    breaker = CircuitBreaker(cooldown_s=0.3, max_cooldown_s=0.3)
    c = client(hiscores, breaker=breaker)
    lookups = [asyncio.create_task(lookup(c)) for _ in range(50)]
    await asyncio.sleep(1.0)  # three cool-downs: a probe after each
    assert breaker.state is not BreakerState.CLOSED
    assert len(hiscores.requests) <= 8
    hiscores.answers = [(200, MID, JSON)]  # the hiscores are back
    answers = await asyncio.wait_for(asyncio.gather(*lookups), 10)
    assert breaker.state is BreakerState.CLOSED
    assert sum(a.hiscores is not None for a in answers) >= 40
    assert all(a.outcome in (None, FetchOutcome.UNAVAILABLE) for a in answers)


async def test_the_breaker_doubles_its_cool_down_after_a_failed_probe():
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, max_cooldown_s=25, clock=lambda: now[0])
    await breaker.record(ok=False, outage=False, probe=False)
    assert breaker.state is BreakerState.CLOSED
    await breaker.record(ok=False, outage=False, probe=False)
    assert breaker.state is BreakerState.OPEN and breaker.open_until == 10
    now[0] = 10
    assert await breaker.acquire() is True  # the half-open probe
    await breaker.record(ok=False, outage=False, probe=True)
    assert breaker.state is BreakerState.OPEN and breaker.open_until == 30
    now[0] = 30
    assert await breaker.acquire() is True
    await breaker.record(ok=False, outage=True, probe=True)
    assert breaker.open_until == 55  # capped at 25 s
    now[0] = 55
    assert await breaker.acquire() is True
    await breaker.record(ok=True, outage=False, probe=True)
    assert breaker.state is BreakerState.CLOSED and breaker.cooldown_s == 10
    assert await breaker.acquire() is False


async def test_the_rate_limiter_paces_request_starts():
    limiter = RateLimiter(rate=50, concurrency=10)
    starts = []

    async def one():
        async with limiter:
            starts.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(11)))
    assert starts[-1] - starts[0] >= 10 / 50 * 0.9


async def test_the_rate_limiter_bounds_concurrency():
    limiter = RateLimiter(rate=10_000, concurrency=3)
    in_flight = peak = 0

    async def one():
        nonlocal in_flight, peak
        async with limiter:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(12)))
    assert peak == 3


@pytest.mark.parametrize("attempt", [1, 2, 3, 10])
def test_backoff_has_jitter_within_its_ceiling(attempt):
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=8.0)
    delays = [policy.backoff(attempt) for _ in range(200)]
    ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
    assert all(0 <= d <= ceiling for d in delays)
    assert len({round(d, 6) for d in delays}) > 150


async def test_answers_to_requests_sent_before_a_trip_do_not_close_the_breaker():
    breaker = CircuitBreaker(cooldown_s=10)
    await breaker.record(ok=False, outage=True, probe=False)
    await breaker.record(ok=True, outage=False, probe=False)  # sent before the trip
    assert breaker.state is BreakerState.OPEN


async def test_a_cancelled_probe_frees_its_turn():
    now = [0.0]
    breaker = CircuitBreaker(cooldown_s=1, clock=lambda: now[0])
    await breaker.record(ok=False, outage=True, probe=False)
    now[0] = 2
    assert await breaker.acquire() is True
    await breaker.abandon(probe=True)
    assert await asyncio.wait_for(breaker.acquire(), 1) is True  # another probe may go


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("inf", 3600.0), ("nan", None), ("-3", 0.0), ("soon", None)],
)
def test_retry_after_is_read_sanely(header, expected):
    import httpx

    from services.fetcher.client import classify

    response = httpx.Response(
        429, headers={"Retry-After": header}, request=httpx.Request("GET", "http://hiscores/")
    )
    assert classify(response).retry_after == expected
