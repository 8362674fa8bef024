"""Overload: the API answers 503 with Retry-After at once instead of hanging, stays live, and
serves again when the load or the slow queries are gone (services/api/shedding.py).

Slow queries are made real: another connection holds `LOCK TABLE players` in an open
transaction, so every API query on `players` waits in Postgres, holding its pool connection."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import msgspec
import psycopg
from prometheus_client import REGISTRY

from services.api.app import create_app
from services.api.shedding import Admission, configure_pool
from shared import db
from shared.settings import Settings

LIST = "/v1/players"
BOUND_S = 10.0  # a generous client timeout: nothing may come near it


@contextlib.asynccontextmanager
async def api(settings, **overrides):
    """The API app with these settings changed, the admin logged in. httpx's ASGI transport
    runs requests concurrently on this loop (Litestar's AsyncTestClient runs one at a time)."""
    app = create_app(msgspec.structs.replace(settings, **overrides))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://api", timeout=BOUND_S) as client,
    ):
        login = {"username": "admin", "password": "correct horse"}
        token = (await client.post("/v1/auth/token", json=login)).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


@contextlib.asynccontextmanager
async def players_locked(database_url: str):
    """Until the block ends, every query on `players` waits."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("LOCK TABLE players IN ACCESS EXCLUSIVE MODE")
        yield
        await conn.rollback()


def shed(reason: str) -> float:
    return REGISTRY.get_sample_value("osrs_api_shed_requests_total", {"reason": reason}) or 0.0


async def timed_get(client, path: str):
    started = time.monotonic()
    async with asyncio.timeout(BOUND_S):
        response = await client.get(path)
    return response, time.monotonic() - started


async def answered(tasks, count: int, within_s: float):
    """(done, pending) once `count` tasks are done, or when the time is up."""
    done, pending = set(), set(tasks)
    deadline = time.monotonic() + within_s
    while len(done) < count and pending and (left := deadline - time.monotonic()) > 0:
        finished, pending = await asyncio.wait(
            pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
        )
        done |= finished
    return done, pending


def assert_refused_politely(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-content-type-options"] == "nosniff"  # like every answer
    assert response.json()["status_code"] == 503 and "retry in 1 s" in response.json()["detail"]


async def test_admission_serves_waiters_in_order_and_bounds_the_queue():
    admission = Admission(max_inflight=1, max_queued=2, queue_timeout_s=0.2)
    assert admission.try_enter() and not admission.try_enter()
    first, second = (asyncio.create_task(admission.wait()) for _ in range(2))
    await asyncio.sleep(0)
    assert admission.queued == 2
    assert await admission.wait() == "overloaded"  # the queue is full: refused at once
    admission.leave()  # the slot goes to the first waiter, not back to the pool
    assert await first is None and admission.in_flight == 1
    assert await second == "queue_timeout" and admission.queued == 0
    admission.leave()
    assert admission.in_flight == 0 and admission.try_enter()


async def test_a_slot_handed_over_as_the_wait_is_cancelled_is_passed_on():
    admission = Admission(max_inflight=1, max_queued=2, queue_timeout_s=5)
    assert admission.try_enter()
    leaving, staying = (asyncio.create_task(admission.wait()) for _ in range(2))
    await asyncio.sleep(0)
    admission.leave()  # hands the slot to `leaving`...
    leaving.cancel()  # ...which is cancelled before it runs again
    with contextlib.suppress(asyncio.CancelledError):
        await leaving
    assert await staying is None and admission.in_flight == 1


async def test_an_exhausted_pool_answers_503_fast_stays_live_and_recovers(settings, js):
    async with api(settings, api_pool_timeout_s=0.3, api_statement_timeout_s=1.5) as client:
        before = {reason: shed(reason) for reason in ("pool_timeout", "statement_timeout")}
        async with players_locked(settings.database_url):
            # 30 requests for a pool of 10: ten wait in Postgres until the statement timeout,
            # the others for a connection until the pool timeout.
            burst = [asyncio.create_task(timed_get(client, LIST)) for _ in range(30)]
            await asyncio.sleep(0.1)
            live, live_s = await timed_get(client, "/health/live")
            ready, _ = await timed_get(client, "/health/ready")
            answers = await asyncio.gather(*burst)
        assert live.status_code == 200 and live_s < 1.0
        assert ready.status_code == 503 and ready.json()["checks"]["postgres"] != "ok"
        for response, took in answers:
            assert_refused_politely(response)
            assert took < 1.5 + 3.0  # the statement timeout, and slack for a busy machine
        assert shed("pool_timeout") - before["pool_timeout"] >= 15
        assert shed("statement_timeout") - before["statement_timeout"] >= 1
        # The lock is gone: served again by the same process, pool and connections.
        after = await asyncio.gather(*(client.get(LIST) for _ in range(20)))
        assert [r.status_code for r in after] == [200] * 20
        assert (await client.get("/health/ready")).status_code == 200


async def test_requests_beyond_max_inflight_are_refused_at_once_then_served(settings, js):
    limits = {"api_max_inflight": 4, "api_max_queued": 2, "api_queue_timeout_s": 0.5}
    async with api(settings, **limits) as client:
        before = {reason: shed(reason) for reason in ("overloaded", "queue_timeout")}
        async with players_locked(settings.database_url):
            # Twice what the process takes in (4 served + 2 waiting) while every one is slow.
            burst = [asyncio.create_task(timed_get(client, LIST)) for _ in range(12)]
            done, held = await answered(burst, count=8, within_s=3.0)
            assert len(done) == 8 and len(held) == 4  # four are in Postgres, waiting
            for task in done:
                response, took = task.result()
                assert_refused_politely(response)
                assert took < 0.5 + 1.5
            assert shed("overloaded") - before["overloaded"] == 6
            assert shed("queue_timeout") - before["queue_timeout"] == 2
            # The probes and the metrics are never refused, and show the shedding.
            assert (await client.get("/health/live")).status_code == 200
            metrics = await client.get("/metrics")
            assert "osrs_api_requests_in_flight 4.0" in metrics.text
            assert 'osrs_api_shed_requests_total{reason="overloaded"}' in metrics.text
        for response, _ in await asyncio.gather(*held):  # the lock is released: served
            assert response.status_code == 200
        # After the burst, as many as the limits take are all served.
        after = await asyncio.gather(*(client.get(LIST) for _ in range(6)))
        assert [r.status_code for r in after] == [200] * 6


def test_the_pool_bounds_waits_and_queries_and_keeps_the_urls_options():
    pool = db.pool("postgresql://x@h/osrs?options=-c%20search_path%3Dosrs", name="t")
    configure_pool(pool, Settings(api_pool_timeout_s=0.75, api_statement_timeout_s=2.5))
    assert pool.timeout == 0.75
    assert pool.kwargs["options"] == "-c search_path=osrs -c statement_timeout=2500"
