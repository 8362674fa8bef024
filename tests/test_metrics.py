"""Prometheus metrics and readiness: the API's /metrics on its own port, a worker's metrics
server (/metrics, /ready, /live) against real NATS and Postgres."""

import asyncio

import httpx
import nats
import pytest
from litestar.testing import AsyncTestClient

from services.api.app import create_app
from services.local import free_port
from shared import db, telemetry


@pytest.fixture
async def anonymous(settings, js):
    """The API without a token (conftest's `client` is logged in)."""
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


def _samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


async def test_the_api_serves_latency_by_route_template_and_status_without_a_token(anonymous):
    client = anonymous
    await client.get("/v1/players")  # refused by the token middleware: 401
    login = await client.post(
        "/v1/auth/token", json={"username": "admin", "password": "correct horse"}
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get("/v1/players/zezima", headers=headers)).status_code == 404
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    buckets = _samples(response.text, "osrs_api_request_duration_seconds_bucket")
    labels = {
        (line.split('route="')[1].split('"')[0], line.split('status="')[1].split('"')[0])
        for line in buckets
    }
    assert {("/v1/players", "401"), ("/v1/auth/token", "200")} <= labels
    assert ("/v1/players/{name}", "404") in labels
    assert "zezima" not in response.text  # templates, never paths: no player names
    assert "process_cpu_seconds_total" in response.text
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


@pytest.fixture
async def worker_server(nats_server, database_url):
    """A worker's metrics server with the projector's checks: NATS and Postgres."""
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    pool = db.pool(database_url, min_size=1, max_size=2, name="test-metrics")
    await pool.open(wait=True)
    server = telemetry.MetricsServer(
        "127.0.0.1",
        free_port(),
        {"nats": telemetry.nats_answers(lambda: nc), "postgres": telemetry.postgres_answers(pool)},
    )
    server.start()
    try:
        yield server
    finally:
        await server.stop()
        await pool.close()
        await nc.close()


async def _get(server, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
        return await http.get(path)


async def test_a_worker_is_ready_while_nats_and_postgres_answer(worker_server, nats_server):
    ready = await _get(worker_server, "/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"nats": "ok", "postgres": "ok"}}
    assert (await _get(worker_server, "/live")).status_code == 200
    nats_server.stop()
    lost = await _get(worker_server, "/ready")
    assert lost.status_code == 503
    assert lost.json()["checks"]["nats"].startswith("error")
    assert lost.json()["checks"]["postgres"] == "ok"
    assert (await _get(worker_server, "/live")).status_code == 200  # alive, just not ready


async def test_a_stopping_worker_is_not_ready(worker_server):
    worker_server.stopping = True
    answer = await _get(worker_server, "/ready")
    assert (answer.status_code, answer.json()) == (503, {"status": "stopping"})


async def test_a_worker_serves_the_shared_metrics(worker_server, js):
    telemetry.DEAD_LETTERS.labels("fetcher", "undecodable")  # a series, even at 0
    await telemetry.consumer_lag(js, [])()  # nothing to sample: no error either
    text = (await _get(worker_server, "/metrics")).text
    for name in (
        "osrs_dead_letters_total",
        "osrs_consumer_pending_messages",
        "osrs_consumer_ack_pending_messages",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert 'osrs_dead_letters_total{reason="undecodable",service="fetcher"}' in text
    assert (await _get(worker_server, "/elsewhere")).status_code == 404


async def test_a_busy_port_leaves_the_worker_running_without_metrics(worker_server):
    other = telemetry.MetricsServer("127.0.0.1", worker_server.port, {})
    other.start()  # logs metrics_server_failed, raises nothing
    assert other.httpd is None
    await other.stop()


async def test_samplers_that_fail_are_tried_again(monkeypatch):
    calls = []

    async def flaky() -> None:
        calls.append(1)
        raise ConnectionError("NATS away")

    task = asyncio.create_task(telemetry.refresh_every(0.01, [flaky]))
    await asyncio.sleep(0.1)
    task.cancel()
    assert len(calls) >= 3
