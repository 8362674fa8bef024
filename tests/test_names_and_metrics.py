from pathlib import Path

import pytest

from shared import xp
from shared.metrics import ACTIVITIES, BY_KEY, SKILLS, metric_key
from shared.players import InvalidPlayerName, player_key, validate_name

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Lynx Titan", "lynx_titan"),
        ("lynx_titan", "lynx_titan"),
        ("LYNX-TITAN", "lynx_titan"),
        ("  Zezima ", "zezima"),
        ("a", "a"),
        ("123456789012", "123456789012"),
    ],
)
def test_player_key_folds_case_space_underscore_and_dash(name, key):
    assert player_key(name) == key


@pytest.mark.parametrize("name", ["", "   ", "thirteen_char", "bad!name", "nöé", "a.b", "x" * 40])
def test_invalid_names_are_refused_with_a_reason(name):
    with pytest.raises(InvalidPlayerName) as excinfo:
        validate_name(name)
    assert str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Kree'Arra", "kreearra"),
        ("Clue Scrolls (all)", "clue_scrolls_all"),
        ("TzKal-Zuk", "tzkal_zuk"),
        ("LMS - Rank", "lms_rank"),
        ("K'ril Tsutsaroth", "kril_tsutsaroth"),
        ("Chambers of Xeric: Challenge Mode", "chambers_of_xeric_challenge_mode"),
    ],
)
def test_metric_keys(name, key):
    assert metric_key(name) == key


def test_registry_has_25_skills_and_91_activities_with_unique_keys():
    assert len(SKILLS) == 25 and len(ACTIVITIES) == 91
    assert SKILLS[0].key == "overall" and SKILLS[-1].key == "sailing"
    assert len(BY_KEY) == 116


def test_xp_table_matches_the_published_table():
    rows = [line.split("\t") for line in (DATA / "xp_table.tsv").read_text().splitlines()[1:]]
    published = {int(level): int(required) for level, required, _ in rows}
    assert {lv: xp.XP_FOR_LEVEL[lv] for lv in published} == published
    assert xp.XP_FOR_LEVEL[99] == 13_034_431 and xp.XP_FOR_LEVEL[126] == 188_884_740


@pytest.mark.parametrize(
    ("points", "virtual", "real"),
    [
        (-1, 1, 1),
        (0, 1, 1),
        (82, 1, 1),
        (83, 2, 2),
        (13_034_430, 98, 98),
        (13_034_431, 99, 99),
        (14_391_160, 100, 99),
        (200_000_000, 126, 99),
    ],
)
def test_levels_from_xp(points, virtual, real):
    assert xp.virtual_level(points) == virtual
    assert xp.level(points) == real


def test_combat_level():
    maxed = {
        k: 99 for k in ("attack", "strength", "defence", "hitpoints", "ranged", "prayer", "magic")
    }
    assert xp.combat_level(maxed) == 126
    assert xp.combat_level({}) == 3  # a fresh account: all 1s, Hitpoints 10


def test_latest_values_report_absent_metrics_as_unranked():
    from services.api.players import latest_values

    metrics = [
        (1, "overall", "skill"),
        (2, "attack", "skill"),
        (3, "sailing", "skill"),
        (4, "zulrah", "activity"),
        (5, "vorkath", "activity"),
    ]
    entries = {1: (10, 50_000_000), 2: (20, 20_000_000), 4: (40, 77)}
    skills, activities = latest_values(metrics, entries, total_level=1000)
    assert (skills["overall"].level, skills["overall"].xp) == (1000, 50_000_000)
    assert skills["overall"].virtual_level is None
    assert (skills["attack"].level, skills["attack"].virtual_level) == (99, 103)
    assert (skills["sailing"].rank, skills["sailing"].level, skills["sailing"].xp) == (-1, 1, -1)
    assert (activities["zulrah"].rank, activities["zulrah"].score) == (40, 77)
    assert (activities["vorkath"].rank, activities["vorkath"].score) == (-1, -1)
