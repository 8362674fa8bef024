"""Faults that only a real server can play: a connection reset and an answer later than the
client's timeout, under uvicorn on loopback with an httpx client, plus `serve()` itself."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from sim.app import SimApp, create_app
from sim.population import Population

ROOT = Path(__file__).resolve().parents[1]
LOOKUP = "/m=hiscore_oldschool/index_lite.json"
FAULTS = {"prefixes": {"reset": "reset", "slow": "slow", "cut": "truncated"}, "slow_s": 2.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["httptools", "h11"])
async def server(request) -> AsyncIterator[tuple[SimApp, str]]:
    """The simulator under uvicorn in this event loop, with either HTTP implementation."""
    app = create_app(Population(50, seed=1), faults=FAULTS)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=request.param, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    started = time.monotonic()
    await asyncio.wait_for(task, 5)
    # A slow answer whose client gave up does not hold the shutdown for slow_s.
    assert time.monotonic() - started < 1.5


async def test_a_reset_drops_the_connection_without_an_answer(server) -> None:
    app, url = server
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get(LOOKUP, params={"player": "Reset Me"})
        # The server carries on, on a fresh connection.
        assert (await client.get(LOOKUP, params={"player": "Sim 1"})).status_code == 200
    assert app.by_fault == {"reset": 1} and app.requests == 2


async def test_a_slow_answer_outlasts_the_client_timeout(server) -> None:
    app, url = server
    async with httpx.AsyncClient(base_url=url, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.get(LOOKUP, params={"player": "Slow Poke"})
        assert time.monotonic() - started < 1.5
        assert (await client.get(LOOKUP, params={"player": "Sim 1"})).status_code == 200
    async with httpx.AsyncClient(base_url=url, timeout=5) as patient:
        await patient.put("/_sim/faults", json={"prefixes": {"sim": "slow"}, "slow_s": 0.3})
        started = time.monotonic()
        response = await patient.get(LOOKUP, params={"player": "Sim 2"})
        assert response.status_code == 200 and response.json()["name"] == "Sim 2"
        assert time.monotonic() - started >= 0.3


async def test_a_truncated_body_is_complete_http_but_broken_json(server) -> None:
    _, url = server
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        response = await client.get(LOOKUP, params={"player": "Cutter"})
        assert response.status_code == 404  # not a player: nothing to cut
        await client.put("/_sim/faults", json={"prefixes": {"sim_1": "truncated"}})
        response = await client.get(LOOKUP, params={"player": "Sim 1"})
        assert response.status_code == 200 and response.content.startswith(b'{"name":"Sim 1"')
        assert int(response.headers["content-length"]) == len(response.content)
        with pytest.raises(ValueError):
            response.json()


_SERVE = """
import sys
from sim.app import serve
serve(20, int(sys.argv[1]), seed=2, fault_prefixes={"boom": "reset"}, fault_rates={"503": 0.5},
      retry_after_s=3, new_bosses=["Test Horror@Mad Angel"])
"""


def test_serve_takes_faults_at_start() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _SERVE, str(port)], cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                faults = httpx.get(f"{url}/_sim/faults", timeout=1).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        assert faults["prefixes"] == {"boom": "reset"} and faults["rates"] == {"503": 0.5}
        assert faults["retry_after_s"] == 3
        assert faults["new_bosses"] == [{"name": "Test Horror", "after": "Mad Angel"}]
        with httpx.Client(base_url=url, timeout=2) as client:
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                client.get(LOOKUP, params={"player": "Boom"})
            statuses = [client.get(LOOKUP, params={"player": "Sim 1"}) for _ in range(40)]
        assert {r.status_code for r in statuses} == {200, 503}
        ok = next(r for r in statuses if r.status_code == 200)
        assert len(ok.json()["activities"]) == 92
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
