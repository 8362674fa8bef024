"""The simulator's faults and layout changes, through its ASGI app with an injected clock."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from shared.metrics import ACTIVITY_NAMES, SKILL_NAMES
from shared.modes import MODULES, GameMode
from sim.app import create_app
from sim.faults import FaultError, build_faults, parse_new_boss, parse_prefix, parse_rate
from sim.layout import make_layout
from sim.payload import to_csv, to_json
from sim.population import Population
from tests.sim_fixtures import T0, Clock

ROOT = Path(__file__).resolve().parents[1]
REGULAR = MODULES[GameMode.REGULAR]
IRONMAN = MODULES[GameMode.IRONMAN]
OUTAGE_HTML = (ROOT / "tests" / "data" / "outage_200.html").read_bytes()
NEW_BOSS = {"name": "Test Horror", "after": "Mad Angel"}


def lookup(module: str = REGULAR, fmt: str = "json") -> str:
    return f"/m={module}/index_lite.{fmt}"


async def get(sim: httpx.AsyncClient, name: str, fmt: str = "json", module: str = REGULAR):
    return await sim.get(lookup(module, fmt), params={"player": name})


async def put_faults(sim: httpx.AsyncClient, faults: dict) -> httpx.Response:
    response = await sim.put("/_sim/faults", json=faults)
    assert response.status_code == 200, response.text
    return response


# --- each kind of fault ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "ws"])
@pytest.mark.parametrize("status", [404, 429, 500, 502, 503, 504])
async def test_status_faults_answer_an_html_error(sim: httpx.AsyncClient, status, fmt) -> None:
    await put_faults(sim, {"prefixes": {"sim": str(status)}})
    response = await get(sim, "Sim 3", fmt)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().startswith("<")
    assert ("retry-after" in response.headers) == (status == 429)
    stats = (await sim.get("/_sim/stats")).json()
    assert stats["faults"] == {str(status): 1} and stats["by_status"] == {str(status): 1}


async def test_a_429_says_when_to_come_back(sim: httpx.AsyncClient) -> None:
    await put_faults(sim, {"prefixes": {"sim": "429"}})
    assert (await get(sim, "Sim 3")).headers["retry-after"] == "1"
    await put_faults(sim, {"prefixes": {"sim": "429"}, "retry_after_s": 30})
    assert (await get(sim, "Sim 3")).headers["retry-after"] == "30"


@pytest.mark.parametrize("fmt", ["json", "ws"])
async def test_html200_is_the_outage_page(sim: httpx.AsyncClient, fmt: str) -> None:
    await put_faults(sim, {"prefixes": {"sim": "html200"}})
    response = await get(sim, "Sim 3", fmt)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == OUTAGE_HTML


async def test_truncated_is_the_payload_cut_in_the_middle(
    sim: httpx.AsyncClient, population: Population
) -> None:
    await put_faults(sim, {"prefixes": {"sim_3": "truncated"}})
    truth = population.truth(population.players[2], T0)
    response = await get(sim, "Sim 3")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    full = to_json(truth)
    assert response.content == full[: len(full) // 2]
    with pytest.raises(json.JSONDecodeError):
        response.json()
    csv = await get(sim, "Sim 3", "ws")
    assert csv.headers["content-type"].startswith("text/plain")
    assert csv.content == to_csv(truth)[: len(to_csv(truth)) // 2]
    assert len(csv.text.splitlines()) < len(SKILL_NAMES) + len(ACTIVITY_NAMES)


async def test_wrong_type_is_the_whole_payload_labelled_html(
    sim: httpx.AsyncClient, population: Population
) -> None:
    await put_faults(sim, {"prefixes": {"sim_3": "wrong_type"}})
    truth = population.truth(population.players[2], T0)
    for fmt, body in (("json", to_json(truth)), ("ws", to_csv(truth))):
        response = await get(sim, "Sim 3", fmt)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.content == body


async def test_garbling_faults_leave_a_404_alone(sim: httpx.AsyncClient) -> None:
    await put_faults(sim, {"prefixes": {"zez": "truncated"}})
    assert (await get(sim, "Zezima")).status_code == 404
    assert (await sim.get("/_sim/stats")).json()["faults"] == {}


async def test_reset_without_a_socket_raises_in_the_client(sim: httpx.AsyncClient) -> None:
    await put_faults(sim, {"prefixes": {"sim": "reset"}})
    with pytest.raises(ConnectionResetError):
        await get(sim, "Sim 3")
    assert (await sim.get("/_sim/stats")).json()["faults"] == {"reset": 1}


async def test_slow_answers_late_but_right(sim: httpx.AsyncClient, population) -> None:
    await put_faults(sim, {"prefixes": {"sim": "slow"}, "slow_s": 0.2})
    started = time.monotonic()
    response = await get(sim, "Sim 3")
    assert time.monotonic() - started >= 0.2
    assert response.content == to_json(population.truth(population.players[2], T0))


# --- how faults are chosen ------------------------------------------------------------------


async def test_rates_are_roughly_respected_and_reproducible(population: Population) -> None:
    rates = {"503": 0.2, "429": 0.1, "404": 0.05}

    async def statuses() -> list[int]:
        app = create_app(population, clock=Clock(T0), faults={"rates": rates})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            return [(await get(client, f"Sim {i % 400 + 1}")).status_code for i in range(2000)]

    first = await statuses()
    counts = Counter(first)
    for status, rate in rates.items():
        expected = 2000 * rate
        assert abs(counts[int(status)] - expected) < 4 * (expected * (1 - rate)) ** 0.5, status
    assert await statuses() == first


async def test_prefixes_fold_like_player_names(sim: httpx.AsyncClient) -> None:
    await put_faults(sim, {"prefixes": {"Flaky-": "503", "flaky_x": "502"}})
    assert (await sim.get("/_sim/faults")).json()["prefixes"] == {"flaky_": "503", "flaky_x": "502"}
    for name in ("FLAKY 1", "flaky_2", "Flaky-Joe"):
        assert (await get(sim, name)).status_code == 503, name
    assert (await get(sim, "Flaky X")).status_code == 502  # the longest prefix wins
    assert (await get(sim, "Flakyjoe")).status_code == 404
    assert (await get(sim, "Sim 1")).status_code == 200


async def test_faults_switch_at_runtime(sim: httpx.AsyncClient) -> None:
    assert (await sim.get("/_sim/faults")).json()["rates"] == {}
    await put_faults(sim, {"rates": {"500": 1.0}})
    assert (await get(sim, "Sim 1")).status_code == 500
    got = (await sim.get("/_sim/faults")).json()
    assert got["rates"] == {"500": 1.0} and got["slow_s"] == 15.0
    assert (await sim.put("/_sim/faults", json=got)).status_code == 200  # round-trips
    assert (await sim.delete("/_sim/faults")).status_code == 204
    assert (await get(sim, "Sim 1")).status_code == 200


@pytest.mark.parametrize(
    "body,status",
    [
        (b"not json", 400),
        (b'{"rates": {"418": 0.5}}', 422),
        (b'{"rates": {"500": 1.5}}', 422),
        (b'{"rates": {"500": 0.6, "503": 0.6}}', 422),
        (b'{"prefixes": {"bad!": "500"}}', 422),
        (b'{"prefixes": {"ok": "teapot"}}', 422),
        (b'{"outage_windows": {"every_s": 10, "for_s": 20}}', 422),
        (b'{"new_bosses": [{"name": "X", "after": "Nobody"}]}', 422),
        (b'{"new_bosses": [{"name": "Zulrah", "after": "Vorkath"}]}', 422),
        (b'{"slow": 3}', 422),
    ],
)
async def test_a_bad_fault_config_is_refused_and_changes_nothing(
    sim: httpx.AsyncClient, body: bytes, status: int
) -> None:
    response = await sim.put("/_sim/faults", content=body)
    assert response.status_code == status and response.json()["detail"]
    assert (await get(sim, "Sim 1")).status_code == 200


async def test_an_outage_answers_every_lookup_with_the_html_page(sim: httpx.AsyncClient) -> None:
    await put_faults(sim, {"outage": True})
    for name in ("Sim 1", "Zezima"):
        response = await get(sim, name)
        assert response.status_code == 200 and response.content == OUTAGE_HTML
    stats = (await sim.get("/_sim/stats")).json()
    assert stats["outage_now"] and stats["faults"] == {"html200": 2}


async def test_outage_windows_come_and_go_with_the_clock(sim: httpx.AsyncClient, clock) -> None:
    await put_faults(sim, {"outage_windows": {"every_s": 100, "for_s": 10}})
    for offset, outage in ((0, True), (9.9, True), (10, False), (99, False), (105, True)):
        clock.t = T0 + offset
        response = await get(sim, "Sim 1")
        assert (response.content == OUTAGE_HTML) == outage, offset


async def test_pins_come_before_faults(sim: httpx.AsyncClient) -> None:
    await put_faults(sim, {"outage": True})
    await sim.post("/_sim/pin/Sim 1", json={"status": 200, "body": {"pinned": True}})
    assert (await get(sim, "Sim 1")).json() == {"pinned": True}
    assert (await get(sim, "Sim 1")).content == OUTAGE_HTML


def test_serve_keywords_and_command_line_helpers() -> None:
    config = build_faults(
        {"rates": {"500": 0.1}, "slow_s": 2},
        prefixes={"Bad Luck": "reset"},
        outage_every_s=60,
        outage_for_s=5,
        new_bosses=["Test Horror@Mad Angel"],
    )
    assert config.rates == {"500": 0.1} and config.slow_s == 2
    assert config.prefixes == {"bad_luck": "reset"}
    assert (config.outage_windows.every_s, config.outage_windows.for_s) == (60, 5)
    assert [(b.name, b.after) for b in config.new_bosses] == [("Test Horror", "Mad Angel")]
    assert parse_rate("429=0.05") == ("429", 0.05)
    assert parse_prefix("flaky=503") == ("flaky", "503")
    assert parse_new_boss("A B@C D") == {"name": "A B", "after": "C D"}
    with pytest.raises(FaultError):
        parse_rate("teapot=1")


# --- a layout change --------------------------------------------------------------------------


async def test_a_new_boss_shifts_the_json_ids_and_the_csv_lines(
    sim: httpx.AsyncClient, population: Population
) -> None:
    before = (await get(sim, "Sim 3")).json()
    await put_faults(sim, {"new_bosses": [NEW_BOSS]})
    after = (await get(sim, "Sim 3")).json()
    names = [a["name"] for a in after["activities"]]
    at = ACTIVITY_NAMES.index("Mad Angel") + 1
    assert names == [*ACTIVITY_NAMES[:at], "Test Horror", *ACTIVITY_NAMES[at:]]
    assert [a["id"] for a in after["activities"]] == list(range(92))
    old = {a["name"]: (a["rank"], a["score"]) for a in before["activities"]}
    assert {a["name"]: (a["rank"], a["score"]) for a in after["activities"]} == {
        **old,
        "Test Horror": (after["activities"][at]["rank"], after["activities"][at]["score"]),
    }
    lines = (await get(sim, "Sim 3", "ws")).text.splitlines()
    assert len(lines) == 25 + 92
    assert lines[25:] == [f"{a['rank']},{a['score']}" for a in after["activities"]]
    layout = make_layout([("Test Horror", "Mad Angel")])
    truth = population.truth(population.players[2], T0, REGULAR, layout)
    assert to_json(truth) == (await get(sim, "Sim 3")).content


async def test_a_new_boss_is_ranked_for_a_few_on_every_board(
    sim: httpx.AsyncClient, population: Population
) -> None:
    second = {"name": "Test Horror II", "after": "Test Horror"}
    await put_faults(sim, {"new_bosses": [NEW_BOSS, second]})
    ranked, seen = 0, 0
    for player in population.players:
        for module in (REGULAR, IRONMAN):
            if module not in player.boards:
                continue
            body = (await get(sim, player.name, module=module)).json()
            names = [a["name"] for a in body["activities"]]
            at = names.index("Test Horror")
            assert names[at + 1] == "Test Horror II" and len(names) == 93
            horror = body["activities"][at]
            seen += 1
            if horror["rank"] != -1:
                ranked += 1
                assert horror["score"] >= 5 and 1 <= horror["rank"] <= 2_000_000
            else:
                assert horror["score"] == -1
    assert 0 < ranked < 0.4 * seen
