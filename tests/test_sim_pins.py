"""Pins: canned answers queued for a player ahead of the synthetic ones (ASGI app, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.modes import MODULES, GameMode
from sim.app import SimApp, create_app
from sim.population import DEFAULT_EPOCH, Population

ROOT = Path(__file__).resolve().parents[1]
T0 = DEFAULT_EPOCH + 400 * 86_400.0 + 3_600
IRONMAN = MODULES[GameMode.IRONMAN]


@pytest.fixture
def population() -> Population:
    return Population(400, seed=1)


@pytest.fixture
def app(population: Population) -> SimApp:
    return create_app(population, clock=lambda: T0)


@pytest.fixture
async def sim(app: SimApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


def lookup(module: str = MODULES[GameMode.REGULAR], fmt: str = "json") -> str:
    return f"/m={module}/index_lite.{fmt}"


async def test_a_pin_is_served_once_then_synthetic_again(sim: httpx.AsyncClient) -> None:
    synthetic = await sim.get(lookup(), params={"player": "Sim 5"})
    pinned = {"name": "Sim 5", "skills": [], "activities": []}
    assert (await sim.post("/_sim/pin/sim_5", json={"body": pinned})).status_code == 204
    first_answer = await sim.get(lookup(), params={"player": "SIM 5"})
    assert first_answer.status_code == 200 and first_answer.json() == pinned
    again = await sim.get(lookup(), params={"player": "Sim 5"})
    assert again.content == synthetic.content


async def test_pins_queue_in_order_and_count_uses(sim: httpx.AsyncClient) -> None:
    await sim.post("/_sim/pin/Sim 6", json={"status": 503, "body": "down", "times": 2})
    await sim.post("/_sim/pin/Sim 6", json={"status": 404, "body": "gone"})
    answers = [await sim.get(lookup(), params={"player": "Sim 6"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 503, 404, 200]
    assert answers[0].text == "down" and answers[2].text == "gone"


async def test_a_forever_pin_lasts_until_deleted(sim: httpx.AsyncClient) -> None:
    await sim.post("/_sim/pin/Sim 7", json={"status": 429, "body": {"x": 1}, "times": -1})
    for _ in range(5):
        response = await sim.get(lookup(fmt="ws"), params={"player": "Sim 7"})
        assert response.status_code == 429 and response.json() == {"x": 1}
    assert (await sim.delete("/_sim/pin/sim-7")).status_code == 204
    assert (await sim.get(lookup(), params={"player": "Sim 7"})).status_code == 200


async def test_an_outage_page_is_served_as_given(sim: httpx.AsyncClient) -> None:
    html = (ROOT / "tests" / "data" / "outage_200.html").read_text()
    pin = {"status": 200, "body": html, "content_type": "text/html; charset=utf-8"}
    await sim.post("/_sim/pin/Sim 8", json=pin)
    response = await sim.get(lookup(), params={"player": "Sim 8"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == html


async def test_a_pinned_name_outside_the_population_is_known_while_pinned(
    sim: httpx.AsyncClient,
) -> None:
    mid = (ROOT / "tests" / "data" / "synthetic_mid.index_lite.json").read_text()
    await sim.post("/_sim/pin/Synth Mid", json={"body": mid})
    response = await sim.get(lookup(), params={"player": "synth_mid"})
    assert response.status_code == 200 and response.text == mid
    assert (await sim.get(lookup(), params={"player": "synth_mid"})).status_code == 404


async def test_a_pin_on_one_board_leaves_the_others_alone(sim: httpx.AsyncClient, population):
    iron = next(p for p in population.players if p.account_type == GameMode.IRONMAN)
    await sim.post(f"/_sim/pin/{iron.name}", json={"status": 500, "module": IRONMAN})
    assert (await sim.get(lookup(), params={"player": iron.name})).status_code == 200
    assert (await sim.get(lookup(IRONMAN), params={"player": iron.name})).status_code == 500
    assert (await sim.get(lookup(IRONMAN), params={"player": iron.name})).status_code == 200


async def test_deleting_all_pins(sim: httpx.AsyncClient) -> None:
    for name in ("Sim 9", "Sim 10"):
        await sim.post(f"/_sim/pin/{name}", json={"status": 502, "times": -1})
    assert (await sim.get("/_sim/pins")).json() == {"sim_9": 1, "sim_10": 1}
    assert (await sim.delete("/_sim/pins")).status_code == 204
    for name in ("Sim 9", "Sim 10"):
        assert (await sim.get(lookup(), params={"player": name})).status_code == 200


@pytest.mark.parametrize(
    "body,status",
    [
        (b"not json", 400),
        (b"[1, 2]", 422),
        (b'{"status": 99}', 422),
        (b'{"status": "200"}', 422),
        (b'{"times": 0}', 422),
        (b'{"module": "hiscore_oldschool_bogus"}', 422),
        (b'{"content_type": "text/html\\r\\nx: y"}', 422),
        (b'{"stauts": 500}', 422),
    ],
)
async def test_a_bad_pin_is_refused_with_a_detail(
    sim: httpx.AsyncClient, body: bytes, status: int
) -> None:
    response = await sim.post("/_sim/pin/Sim 1", content=body)
    assert response.status_code == status
    assert response.json()["detail"]
    assert (await sim.get("/_sim/pins")).json() == {}


async def test_a_pin_for_an_impossible_name_is_refused(sim: httpx.AsyncClient) -> None:
    response = await sim.post("/_sim/pin/much too long name", json={})
    assert response.status_code == 400 and "detail" in response.json()
