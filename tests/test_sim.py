"""The hiscores simulator, driven through its ASGI app with an injected clock (no network)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.metrics import ACTIVITY_NAMES, SKILL_NAMES
from shared.modes import MODULES, GameMode
from shared.xp import MAX_SKILL_XP
from sim.app import NOT_FOUND_HTML
from sim.payload import to_csv, to_json
from sim.population import DEFAULT_EPOCH, Population, SimPlayer
from tests.sim_fixtures import T0

ROOT = Path(__file__).resolve().parents[1]
DAY = 86_400.0
REGULAR = MODULES[GameMode.REGULAR]
IRONMAN = MODULES[GameMode.IRONMAN]
HARDCORE = MODULES[GameMode.HARDCORE]
ULTIMATE = MODULES[GameMode.ULTIMATE]


def first(population: Population, test: Callable[[SimPlayer], bool]) -> SimPlayer:
    return next(p for p in population.players if test(p))


def lookup(module: str = REGULAR, fmt: str = "json") -> str:
    return f"/m={module}/index_lite.{fmt}"


def payload(population: Population, player: SimPlayer, t: float) -> dict:
    return json.loads(to_json(population.state_at(player, t)))


def progress(body: dict) -> tuple:
    """What counts as changed downstream: everything but ranks."""
    skills = [(s["name"], s["level"], s["xp"]) for s in body["skills"]]
    return skills, [(a["name"], a["score"]) for a in body["activities"]]


# --- the population ---------------------------------------------------------------------------


def test_same_seed_and_time_give_the_same_bytes() -> None:
    a, b = Population(300, seed=7), Population(300, seed=7)
    for index in (0, 1, 150, 299):
        state_a, state_b = a.state_at(a.players[index], T0), b.state_at(b.players[index], T0)
        assert to_json(state_a) == to_json(state_b)
        assert to_csv(state_a) == to_csv(state_b)


def test_another_seed_gives_another_population() -> None:
    a, b = Population(50, seed=1), Population(50, seed=2)
    assert [to_json(a.state_at(p, T0)) for p in a.players] != [
        to_json(b.state_at(p, T0)) for p in b.players
    ]


_DIGEST = """
import hashlib, sys
from sim.payload import to_json
from sim.population import Population
population = Population(60, seed=5)
digest = hashlib.sha256()
for player in population.players:
    digest.update(to_json(population.state_at(player, float(sys.argv[1]))))
print(digest.hexdigest())
"""


def test_payloads_are_identical_across_processes() -> None:
    population = Population(60, seed=5)
    digest = hashlib.sha256()
    for player in population.players:
        digest.update(to_json(population.state_at(player, T0)))
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST, repr(T0)], env=env, capture_output=True, check=True
    )
    assert out.stdout.decode().strip() == digest.hexdigest()


def test_an_active_player_changes_every_tick_and_an_idle_one_never(population: Population) -> None:
    active = first(population, lambda p: p.active)
    idle = first(population, lambda p: not p.active)
    later = T0 + population.tick_s
    assert progress(payload(population, active, later)) != progress(payload(population, active, T0))
    a_year_later = T0 + 365 * DAY
    assert progress(payload(population, idle, a_year_later)) == progress(
        payload(population, idle, T0)
    )


def test_ranks_drift_daily_even_for_idle_players(population: Population) -> None:
    idle = first(population, lambda p: not p.active)
    today, tomorrow = payload(population, idle, T0), payload(population, idle, T0 + DAY)
    assert [s["rank"] for s in today["skills"]] != [s["rank"] for s in tomorrow["skills"]]
    later_today = payload(population, idle, T0 + 5 * population.tick_s)
    assert later_today == today


def test_most_players_are_active_and_all_account_types_exist(population: Population) -> None:
    players = list(population.players)
    assert 0.45 < sum(p.active for p in players) / len(players) < 0.75
    assert {p.account_type for p in players} == {
        GameMode.REGULAR,
        GameMode.IRONMAN,
        GameMode.HARDCORE,
        GameMode.ULTIMATE,
    }


def test_unranked_entries_look_like_the_real_api(population: Population) -> None:
    unranked_skills, unranked_activities = 0, 0
    for player in population.players[:100]:
        body = payload(population, player, T0)
        for skill in body["skills"]:
            if skill["rank"] == -1:
                unranked_skills += 1
                assert (skill["level"], skill["xp"]) == (1, -1)
            else:
                assert 1 <= skill["rank"] <= 2_000_000
        for activity in body["activities"]:
            if activity["rank"] == -1:
                unranked_activities += 1
                assert activity["score"] == -1
    assert unranked_skills > 0 and unranked_activities > 0


def test_overall_is_the_sum_of_the_true_skills(population: Population) -> None:
    for player in population.players[:100]:
        overall, *skills = payload(population, player, T0)["skills"]
        true_xp = population.xp_at(player, T0)
        assert overall["name"] == "Overall"
        assert overall["xp"] == sum(true_xp.values())
        # Unranked skills show xp -1 but still count towards Overall.
        assert overall["xp"] >= sum(s["xp"] for s in skills if s["rank"] != -1)
        assert overall["level"] >= sum(s["level"] for s in skills)
        if all(s["rank"] != -1 for s in skills):
            assert overall["xp"] == sum(s["xp"] for s in skills)
            assert overall["level"] == sum(s["level"] for s in skills)


def test_xp_never_passes_200m(population: Population) -> None:
    far_future = DEFAULT_EPOCH + 200 * 365 * DAY
    capped = 0
    for player in population.players[:150]:
        overall, *skills = payload(population, player, far_future)["skills"]
        assert all(s["xp"] <= MAX_SKILL_XP and s["level"] <= 99 for s in skills)
        assert overall["xp"] <= 24 * MAX_SKILL_XP and overall["level"] <= 24 * 99
        capped += sum(s["xp"] == MAX_SKILL_XP for s in skills)
    assert capped > 0


def test_more_xp_never_means_a_worse_rank_on_the_same_day(population: Population) -> None:
    active = first(population, lambda p: p.active)
    before, after = payload(population, active, T0), payload(population, active, T0 + 600)
    for old, new in zip(before["skills"], after["skills"], strict=True):
        if old["rank"] != -1:
            assert new["xp"] >= old["xp"] and new["rank"] <= old["rank"]


def test_find_folds_case_space_underscore_and_dash(population: Population) -> None:
    for spelling in ("Sim 3", "sim 3", "SIM_3", "sim-3", " Sim 3 "):
        found = population.find(spelling)
        assert found is not None and found.name == "Sim 3" and found.key == "sim_3"
    for missing in ("Sim 03", "Sim 0", "Sim 401", "Zezima", "bad!name", "x" * 13, ""):
        assert population.find(missing) is None


# --- the hiscores routes ----------------------------------------------------------------------


async def test_json_route_serves_the_index_lite_shape(
    sim: httpx.AsyncClient, population: Population
) -> None:
    response = await sim.get(lookup(), params={"player": "sim_3"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["name", "skills", "activities"]
    assert body["name"] == "Sim 3"
    assert [(s["id"], s["name"]) for s in body["skills"]] == list(enumerate(SKILL_NAMES))
    assert [(a["id"], a["name"]) for a in body["activities"]] == list(enumerate(ACTIVITY_NAMES))
    assert all(list(s) == ["id", "name", "rank", "level", "xp"] for s in body["skills"])
    assert all(list(a) == ["id", "name", "rank", "score"] for a in body["activities"])
    assert response.content == to_json(population.state_at(population.players[2], T0))


async def test_csv_route_has_one_line_per_entry(sim: httpx.AsyncClient) -> None:
    response = await sim.get(lookup(fmt="ws"), params={"player": "Sim 3"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.endswith("\n")
    lines = response.text.splitlines()
    assert len(lines) == len(SKILL_NAMES) + len(ACTIVITY_NAMES) == 25 + 91
    assert all(len(line.split(",")) == 3 for line in lines[:25])
    assert all(len(line.split(",")) == 2 for line in lines[25:])
    body = (await sim.get(lookup(), params={"player": "Sim 3"})).json()
    expected = [f"{s['rank']},{s['level']},{s['xp']}" for s in body["skills"]]
    assert lines[:25] == expected
    assert lines[25:] == [f"{a['rank']},{a['score']}" for a in body["activities"]]


async def test_the_payload_follows_the_clock(sim: httpx.AsyncClient, population, clock) -> None:
    active = first(population, lambda p: p.active)
    before = await sim.get(lookup(), params={"player": active.name})
    clock.t += population.tick_s
    after = await sim.get(lookup(), params={"player": active.name})
    assert progress(before.json()) != progress(after.json())


async def test_a_frozen_clock_stops_progress_until_it_runs_again(
    sim: httpx.AsyncClient, population, clock
) -> None:
    active = first(population, lambda p: p.active)
    frozen = await sim.put("/_sim/clock", json={"frozen": True})
    assert frozen.json() == {"now": clock.t, "frozen": True}
    before = await sim.get(lookup(), params={"player": active.name})
    clock.t += 3 * population.tick_s
    assert (await sim.get(lookup(), params={"player": active.name})).content == before.content
    assert (await sim.get("/_sim/truth", params={"player": active.name})).content == before.content
    running = await sim.put("/_sim/clock", json={"frozen": False})
    assert running.json() == {"now": clock.t, "frozen": False}
    after = await sim.get(lookup(), params={"player": active.name})
    assert progress(before.json()) != progress(after.json())
    bad = await sim.put("/_sim/clock", json={"frozen": "yes"})
    assert bad.status_code == 400 and "frozen" in bad.json()["detail"]


@pytest.mark.parametrize(
    "path,params",
    [
        (lookup(), {"player": "Zezima"}),
        (lookup(), {"player": "Sim 401"}),
        (lookup(), {"player": "bad!name"}),
        (lookup(), {"player": "thirteen char"}),
        (lookup(), {}),
        (lookup(fmt="ws"), {"player": "Nobody"}),
        ("/m=hiscore_oldschool_bogus/index_lite.json", {"player": "Sim 1"}),
        ("/m=hiscore_oldschool/index_lite.xml", {"player": "Sim 1"}),
        ("/", {}),
    ],
)
async def test_not_found_is_the_html_404(sim: httpx.AsyncClient, path: str, params: dict) -> None:
    response = await sim.get(path, params=params)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == NOT_FOUND_HTML


@pytest.mark.parametrize(
    "account_type,boards",
    [
        (GameMode.REGULAR, {REGULAR}),
        (GameMode.IRONMAN, {REGULAR, IRONMAN}),
        (GameMode.HARDCORE, {REGULAR, IRONMAN, HARDCORE}),
        (GameMode.ULTIMATE, {REGULAR, IRONMAN, ULTIMATE}),
    ],
)
async def test_each_account_type_is_on_its_boards_only(
    sim: httpx.AsyncClient, population: Population, account_type: GameMode, boards: set[str]
) -> None:
    player = first(population, lambda p: p.account_type == account_type and set(p.boards) == boards)
    for module in MODULES.values():
        response = await sim.get(lookup(module), params={"player": player.name})
        assert response.status_code == (200 if module in boards else 404), module


async def test_every_board_has_players_and_answers_only_for_them(
    sim: httpx.AsyncClient, population: Population
) -> None:
    for module in MODULES.values():
        on_board = first(population, lambda p, m=module: m in p.boards)
        # Everyone is on the regular board: only a stranger is not.
        off_board = next((p.name for p in population.players if module not in p.boards), "Zezima")
        for fmt in ("json", "ws"):
            params = {"player": on_board.name}
            assert (await sim.get(lookup(module, fmt), params=params)).status_code == 200
            params = {"player": off_board}
            assert (await sim.get(lookup(module, fmt), params=params)).status_code == 404


# --- control routes ---------------------------------------------------------------------------


async def test_health_players_and_stats(sim: httpx.AsyncClient, population: Population) -> None:
    assert (await sim.get("/_sim/health")).json() == {"status": "ok", "players": 400}
    page = (await sim.get("/_sim/players", params={"limit": 3, "offset": 10})).json()
    assert [p["name"] for p in page] == ["Sim 11", "Sim 12", "Sim 13"]
    assert set(page[0]) == {
        "name",
        "key",
        "active",
        "account_type",
        "account_type_now",
        "profile",
        "build",
        "boards",
        "died_at_tick",
        "died_at",
        "deironed_at_tick",
        "deironed_at",
    }
    bossers = (await sim.get("/_sim/players", params={"profile": "bosser"})).json()
    assert bossers and all(p["profile"] == "bosser" and p["active"] for p in bossers)
    assert (await sim.get("/_sim/players", params={"profile": "afk"})).status_code == 400
    params = {"account_type_now": "de_ironed", "limit": 400}
    deironed = (await sim.get("/_sim/players", params=params)).json()
    ticks = population.ticks_at(T0)
    assert deironed and all(p["deironed_at_tick"] < ticks for p in deironed)
    assert all(p["deironed_at"] == population.time_of_tick(p["deironed_at_tick"]) for p in deironed)
    actives = (await sim.get("/_sim/players", params={"active": "true", "limit": 20})).json()
    assert len(actives) == 20 and all(p["active"] for p in actives)
    irons = (await sim.get("/_sim/players", params={"account_type": "ironman"})).json()
    assert irons and all(p["account_type"] == "ironman" for p in irons)
    assert (await sim.get("/_sim/players", params={"limit": "x"})).status_code == 400

    await sim.get(lookup(), params={"player": "Sim 1"})
    await sim.get(lookup(), params={"player": "Nobody"})
    await sim.get(lookup(fmt="ws"), params={"player": "Sim 2"})
    stats = (await sim.get("/_sim/stats")).json()
    assert stats == {
        "requests": 3,
        "by_status": {"200": 2, "404": 1},
        "faults": {},
        "outage_now": False,
        "most_in_flight": 1,
        "most_in_flight_per_player": 1,
    }
    assert (await sim.delete("/_sim/stats")).status_code == 204
    stats = (await sim.get("/_sim/stats")).json()
    assert (stats["requests"], stats["by_status"]) == (0, {})


async def test_an_unknown_control_route_is_a_json_404(sim: httpx.AsyncClient) -> None:
    response = await sim.get("/_sim/nothing")
    assert response.status_code == 404 and "detail" in response.json()
