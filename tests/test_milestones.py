"""The milestone set shared by achievements and progress events."""

from hypothesis import given
from hypothesis import strategies as st

from shared import xp
from shared.metrics import LEVELLED_SKILLS
from shared.milestones import MAX_OVERALL_XP, MAX_TOTAL_LEVEL, crossed, reached


def keys(skills=None, activities=None, total_level=None) -> set[str]:
    return {m.key for m in reached(skills or {}, activities or {}, total_level)}


def test_base_levels_need_every_skill():
    seventies = dict.fromkeys(LEVELLED_SKILLS, xp.XP_FOR_LEVEL[75])
    assert {k for k in keys(seventies) if k.startswith("base_")} == {
        "base_level.60",
        "base_level.70",
    }
    one_low = seventies | {"sailing": xp.XP_FOR_LEVEL[59]}
    assert not {k for k in keys(one_low) if k.startswith("base_")}
    unranked = seventies | {"sailing": -1}  # an unranked skill counts as level 1
    assert not {k for k in keys(unranked) if k.startswith("base_")}


def test_99s_and_200m_per_skill_at_their_exact_thresholds():
    assert keys({"attack": 13_034_430}) == set()
    assert keys({"attack": 13_034_431}) == {"level_99.attack"}
    assert keys({"attack": 200_000_000}) == {"level_99.attack", "xp_200m.attack"}


def test_total_level_and_overall_xp():
    got = keys({"overall": 1_000_000_000}, total_level=2000)
    assert {"total_level.2000", "total_level.500", "overall_xp.1000000000"} <= got
    assert "total_level.2100" not in got and "overall_xp.2000000000" not in got
    maxed = keys({"overall": MAX_OVERALL_XP}, total_level=MAX_TOTAL_LEVEL)
    assert f"total_level.{MAX_TOTAL_LEVEL}" in maxed and f"overall_xp.{MAX_OVERALL_XP}" in maxed


def test_boss_kills_and_clues_but_not_minigame_points():
    got = keys(
        activities={
            "zulrah": 500,
            "clue_scrolls_all": 100,
            "soul_wars_zeal": 5000,
            "lms_rank": 1000,
            "brand_new_boss": 50,  # a name the registry has never seen counts as a boss
        }
    )
    assert got == {
        "boss_kc.zulrah.50",
        "boss_kc.zulrah.100",
        "boss_kc.zulrah.500",
        "clues.clue_scrolls_all.100",
        "boss_kc.brand_new_boss.50",
    }


# Values near the thresholds, so that a step often crosses one.
AMOUNTS = st.sampled_from(
    [-1, 0, 50, 99, 100, 499, 500, 1000, 5000, xp.XP_FOR_LEVEL[60], xp.XP_FOR_LEVEL[99] - 1]
    + [xp.XP_FOR_LEVEL[99], xp.MAX_SKILL_XP, 1_000_000_000, MAX_OVERALL_XP]
)
SKILL_KEYS = st.sampled_from([*LEVELLED_SKILLS, "overall"])
ACTIVITY_KEYS = st.sampled_from(["zulrah", "vorkath", "clue_scrolls_all", "lms_rank", "new_boss"])
ACCOUNTS = st.tuples(
    st.dictionaries(SKILL_KEYS, AMOUNTS),
    st.dictionaries(ACTIVITY_KEYS, AMOUNTS),
    st.one_of(st.none(), st.sampled_from([0, 500, 1500, 2200, MAX_TOTAL_LEVEL])),
)


@given(before=ACCOUNTS, now=ACCOUNTS, base=st.sampled_from([None, -1, xp.XP_FOR_LEVEL[99]]))
def test_crossed_is_the_difference_of_the_two_full_sets(before, now, base):
    # `base` fills the skills not drawn, so base-level milestones happen too
    fill = {} if base is None else dict.fromkeys(LEVELLED_SKILLS, base)
    before = ({**fill, **before[0]}, before[1], before[2])
    now = ({**fill, **now[0]}, now[1], now[2])
    assert crossed(*now, before) == reached(*now) - reached(*before)
    assert crossed(*now, now) == set()
