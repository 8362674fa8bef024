"""The simulated population's realism: profiles, account types and fates, and invariants that
every board of every player keeps at any time (no network)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable

import pytest

from shared.metrics import ACTIVITY_NAMES, SKILL_NAMES, metric_key
from shared.modes import MODULES, GameMode
from shared.xp import MAX_SKILL_XP, XP_FOR_LEVEL, combat_level, level
from sim.activities import CLUE_ALL, CLUE_TIERS, spec_for
from sim.payload import HiscoresState
from sim.population import DEFAULT_EPOCH, Population, SimPlayer
from sim.profiles import LEVELLED, MAX_PLAY_RATE, Build, Profile
from sim.ranks import RANK_CAP

DAY = 86_400.0
HOUR = 3_600.0
YEAR = 365 * DAY
T0 = DEFAULT_EPOCH + 400 * DAY + HOUR
REGULAR = MODULES[GameMode.REGULAR]
IRONMAN = MODULES[GameMode.IRONMAN]
HARDCORE = MODULES[GameMode.HARDCORE]
MOMENTS = (DEFAULT_EPOCH, DEFAULT_EPOCH + 3 * DAY + 5, T0, DEFAULT_EPOCH + 4 * YEAR)


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(400, seed=1)


@pytest.fixture(scope="module")
def big() -> Population:
    return Population(3000, seed=3)


def players(population: Population, test: Callable[[SimPlayer], bool]) -> list[SimPlayer]:
    return [p for p in population.players if test(p)]


def progress(state: HiscoresState) -> tuple:
    """What counts as changed downstream: everything but ranks."""
    return (
        [(s.name, s.level, s.xp) for s in state.skills],
        [(a.name, a.score) for a in state.activities],
    )


def by_key(state: HiscoresState) -> dict[str, int]:
    return {metric_key(s.name): s.xp for s in state.skills}


def true_xp(population: Population, player: SimPlayer, module: str, t: float) -> list[int]:
    ticks = population.board_ticks(player, module, population.ticks_at(t))
    return population.character(player, module).xp_at(ticks)


# --- who is in the population -------------------------------------------------------------------


def test_every_profile_build_fate_and_board_is_there(big: Population) -> None:
    everyone = list(big.players)
    profiles = Counter(p.profile for p in everyone)
    assert set(profiles) == set(Profile)
    assert 0.25 < profiles[Profile.IDLE] / len(everyone) < 0.45
    assert {p.build for p in everyone} == set(Build)
    assert {p.account_type for p in everyone} == {
        GameMode.REGULAR,
        GameMode.IRONMAN,
        GameMode.HARDCORE,
        GameMode.ULTIMATE,
    }
    assert {board for p in everyone for board in p.boards} == set(MODULES.values())
    died = [p for p in everyone if p.died_at_tick is not None]
    deironed = [p for p in everyone if p.deironed_at_tick is not None]
    assert died and all(p.account_type == GameMode.HARDCORE and p.active for p in died)
    assert deironed and all(p.account_type == GameMode.IRONMAN and p.active for p in deironed)
    assert all(p.active == (p.profile != Profile.IDLE) for p in everyone)


def test_the_population_is_the_same_for_the_same_seed() -> None:
    a, b, c = Population(200, seed=9), Population(200, seed=9), Population(200, seed=10)
    assert [p.as_json() for p in a.players] == [p.as_json() for p in b.players]
    assert [p.as_json() for p in a.players] != [p.as_json() for p in c.players]
    for player in a.players[:50]:
        for module in player.boards:
            assert a.truth(player, T0, module) == b.truth(b.players[player.index], T0, module)


# --- what every board shows -----------------------------------------------------------------


def check_board(population: Population, player: SimPlayer, module: str, t: float) -> None:
    state = population.truth(player, t, module)
    assert state is not None and state.name == player.name
    assert [s.name for s in state.skills] == list(SKILL_NAMES)
    assert [a.name for a in state.activities] == list(ACTIVITY_NAMES)
    overall, *skills = state.skills
    xps = true_xp(population, player, module, t)
    for row, xp in zip(skills, xps, strict=True):
        assert 0 <= xp <= MAX_SKILL_XP
        if row.rank == -1:
            assert (row.level, row.xp) == (1, -1) and xp < XP_FOR_LEVEL[15]
        else:
            assert (row.level, row.xp) == (level(xp), xp) and 1 <= row.rank <= RANK_CAP
    # Overall: the true sums, unranked skills included.
    assert overall.xp == sum(xps) <= 24 * MAX_SKILL_XP
    assert overall.level == sum(level(xp) for xp in xps) <= 2376
    assert 1 <= overall.rank <= RANK_CAP
    scores = {a.name: a for a in state.activities}
    for row in state.activities:
        if row.rank == -1:
            assert row.score == -1
        else:
            assert row.score >= spec_for(row.name).minimum and 1 <= row.rank <= RANK_CAP
    tiers = sum(max(0, scores[tier].score) for tier in CLUE_TIERS)
    assert scores[CLUE_ALL].score in (tiers, -1)


@pytest.mark.parametrize("t", MOMENTS)
def test_every_board_is_consistent_at_any_time(population: Population, t: float) -> None:
    for player in population.players:
        for module in player.boards:
            check_board(population, player, module, t)


def test_idle_players_never_change_but_their_ranks_drift(population: Population) -> None:
    for player in players(population, lambda p: not p.active):
        today = population.truth(player, T0)
        assert progress(population.truth(player, DEFAULT_EPOCH)) == progress(today)
        assert progress(population.truth(player, T0 + 3 * YEAR)) == progress(today)
    idle = players(population, lambda p: not p.active)[:50]
    tomorrow = [population.truth(p, T0 + DAY).skills[0].rank for p in idle]
    assert tomorrow != [population.truth(p, T0).skills[0].rank for p in idle]
    # Others keep playing: standing still loses ground over months (down to the last rank).
    later = [population.truth(p, T0 + 180 * DAY).skills[0].rank for p in idle]
    pairs = [(a, b) for a, b in zip(later, tomorrow, strict=True) if b < RANK_CAP / 1.1]
    assert len(pairs) > 20 and all(a > b for a, b in pairs)


@pytest.mark.parametrize("tick_s", [60.0, 1.0])
@pytest.mark.parametrize("years", [0.01, 1.1, 4.0, 9.0])
def test_active_players_change_every_tick_for_years(tick_s: float, years: float) -> None:
    population = Population(300, seed=1, tick_s=tick_s)
    t = DEFAULT_EPOCH + years * YEAR + 7
    for player in players(population, lambda p: p.active):
        before = population.truth(player, t)
        after = population.truth(player, t + tick_s)
        assert after.skills[0].xp > before.skills[0].xp, (player.name, player.profile)


def test_gains_per_hour_are_ones_a_player_could_make(big: Population) -> None:
    daily = []
    for player in players(big, lambda p: p.active)[:800]:
        now = true_xp(big, player, REGULAR, T0)
        hour_later = true_xp(big, player, REGULAR, T0 + HOUR)
        gains = [b - a for a, b in zip(now, hour_later, strict=True)]
        assert all(0 <= gain <= MAX_PLAY_RATE for gain in gains)
        assert sum(gains) <= MAX_PLAY_RATE
        before, after = big.truth(player, T0), big.truth(player, T0 + HOUR)
        for a, b in zip(before.activities, after.activities, strict=True):
            if a.name != CLUE_ALL:
                assert 0 <= max(b.score, 0) - max(a.score, 0) <= 60, a.name  # a few kills
        daily.append(sum(true_xp(big, player, REGULAR, T0 + DAY)) - sum(now))
    # A day of play: tens of thousands to a few million xp, not nothing and not a bot's.
    assert 10_000 < statistics.median(daily) < 2_000_000
    assert max(daily) < 24 * MAX_PLAY_RATE


def test_a_hardcore_death_freezes_the_hardcore_board_only(big: Population) -> None:
    dead = players(big, lambda p: p.died_at_tick is not None and p.died_at_tick > 100)
    assert dead
    for player in dead[:20]:
        death = big.time_of_tick(player.died_at_tick)
        before = death - 50 * big.tick_s
        # Alive: the hardcore and ironman boards show the same account.
        assert progress(big.truth(player, before, HARDCORE)) == progress(
            big.truth(player, before, IRONMAN)
        )
        assert big.account_type_at(player, death) == "hardcore"
        assert big.account_type_at(player, death + big.tick_s) == "ironman"  # what boards tell
        at_death = progress(big.truth(player, death, HARDCORE))
        for later in (death + big.tick_s, death + 30 * DAY, death + 2 * YEAR):
            assert progress(big.truth(player, later, HARDCORE)) == at_death
            assert progress(big.truth(player, later, IRONMAN)) != at_death
            assert progress(big.truth(player, later, REGULAR)) != at_death


def test_a_deironed_account_keeps_a_frozen_iron_entry(big: Population) -> None:
    deironed = players(big, lambda p: p.deironed_at_tick is not None and p.deironed_at_tick > 100)
    assert deironed
    for player in deironed[:20]:
        moment = big.time_of_tick(player.deironed_at_tick)
        before = moment - 50 * big.tick_s
        assert progress(big.truth(player, before, IRONMAN)) == progress(
            big.truth(player, before, REGULAR)
        )
        assert big.account_type_at(player, moment) == "ironman"
        assert big.account_type_at(player, moment + big.tick_s) == "de_ironed"
        frozen = big.truth(player, moment, IRONMAN)
        for later in (moment + big.tick_s, moment + 90 * DAY):
            iron, regular = big.truth(player, later, IRONMAN), big.truth(player, later, REGULAR)
            assert progress(iron) == progress(frozen)
            assert regular.skills[0].xp > iron.skills[0].xp
        assert big.truth(player, moment + DAY, HARDCORE) is None


def test_level_3_skillers_and_pures_never_train_what_they_must_not(big: Population) -> None:
    skillers = players(big, lambda p: p.build == Build.LEVEL_3)
    pures = players(big, lambda p: p.build == Build.PURE)
    assert skillers and pures
    for t in (DEFAULT_EPOCH, T0, DEFAULT_EPOCH + 5 * YEAR):
        for player in skillers:
            xps = true_xp(big, player, REGULAR, t)
            levels = {metric_key(name): level(xp) for name, xp in zip(LEVELLED, xps, strict=True)}
            assert combat_level(levels) == 3 and levels["hitpoints"] == 10
            assert big.truth(player, t, MODULES[GameMode.SKILLER]) is not None
        for player in pures:
            assert by_key(big.truth(player, t))["defence"] <= 0  # level 1: unranked
            assert big.truth(player, t, MODULES[GameMode.DEFENCE_PURE]) is not None


def test_new_accounts_are_mostly_unranked_but_on_the_board(big: Population) -> None:
    new = players(big, lambda p: p.profile == Profile.NEW)
    for player in new:
        state = big.truth(player, T0)
        unranked_skills = sum(s.rank == -1 for s in state.skills[1:])
        unranked_activities = sum(a.rank == -1 for a in state.activities)
        assert unranked_skills >= 16 and unranked_skills < len(LEVELLED)
        assert unranked_activities >= len(ACTIVITY_NAMES) - 4


def test_maxed_accounts_sit_at_200m_and_are_ranked(big: Population) -> None:
    maxed = players(big, lambda p: p.profile == Profile.MAXED)
    assert maxed
    for player in maxed:
        overall, *skills = big.truth(player, T0).skills
        assert sum(s.xp == MAX_SKILL_XP for s in skills) >= 13
        assert all(s.level == 99 and s.rank >= 1 for s in skills)
        assert overall.level == 2376 and overall.rank >= 1
    top = [s.rank for p in maxed for s in big.truth(p, T0).skills[1:] if s.xp == MAX_SKILL_XP]
    assert max(top) < 5_000 and len(set(top)) > 20  # near the top, in the order they got there
