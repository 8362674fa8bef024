"""Milestones: the achievements a player can reach, from one observation's values.

The set is shared by the achievements read model and, later, by the progress events, so both
always agree. A milestone's key is stable and readable: `base_level.70`, `level_99.attack`,
`xp_200m.attack`, `total_level.2000`, `overall_xp.1000000000`, `boss_kc.zulrah.500`,
`clues.clue_scrolls_all.100`."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from shared import xp
from shared.metrics import ACTIVITY_NAMES, LEVELLED_SKILLS, metric_key

BASE_LEVELS = (60, 70, 80, 90, 99)
MAX_TOTAL_LEVEL = xp.MAX_LEVEL * len(LEVELLED_SKILLS)
TOTAL_LEVELS = (500, 1000, 1250, 1500, 1750, 2000, 2100, 2200, MAX_TOTAL_LEVEL)
MAX_OVERALL_XP = xp.MAX_SKILL_XP * len(LEVELLED_SKILLS)
OVERALL_XP = (
    10_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    4_000_000_000,
    MAX_OVERALL_XP,
)
BOSS_KILLS = (50, 100, 500, 1000, 5000)
CLUES = (100, 500, 1000)

# The hiscores list minigames, points and clues before the bosses; an activity the registry has
# never seen (a new one appears with each new boss) counts as a boss.
_FIRST_BOSS = ACTIVITY_NAMES.index("Abyssal Sire")
NOT_BOSSES = frozenset(metric_key(name) for name in ACTIVITY_NAMES[:_FIRST_BOSS])
CLUE_METRICS = frozenset(key for key in NOT_BOSSES if key.startswith("clue_scrolls_"))


class Milestone(msgspec.Struct, frozen=True, order=True):
    key: str
    kind: str  # base_level | level_99 | xp_200m | total_level | overall_xp | boss_kc | clues
    metric: str | None
    threshold: int  # a level, an xp amount or a count, as the kind says


def reached(
    skills: Mapping[str, int], activities: Mapping[str, int], total_level: int | None
) -> set[Milestone]:
    """Every milestone met by one observation: `skills` maps skill keys to xp and `activities`
    activity keys to scores (-1, or absent, when unranked); `total_level` is Overall's level,
    which xp cannot give."""
    return _account(skills, total_level) | _per_metric(skills, activities)


def crossed(
    skills: Mapping[str, int],
    activities: Mapping[str, int],
    total_level: int | None,
    before: tuple[Mapping[str, int], Mapping[str, int], int | None],
) -> set[Milestone]:
    """`reached(now) - reached(before)`, looking only at what changed: usually a few metrics
    of the hundred-odd, so this is several times cheaper than the two full sets."""
    skills_before, activities_before, total_before = before
    changed_skills = {k: v for k, v in skills.items() if skills_before.get(k, -1) != v}
    changed_activities = {k: v for k, v in activities.items() if activities_before.get(k, -1) != v}
    found = _per_metric(changed_skills, changed_activities) - _per_metric(
        {k: skills_before.get(k, -1) for k in changed_skills},
        {k: activities_before.get(k, -1) for k in changed_activities},
    )
    gone = any(k not in skills for k in skills_before)  # a skill now unranked lowers the base
    if changed_skills or gone or total_level != total_before:
        found |= _account(skills, total_level) - _account(skills_before, total_before)
    return found


def _account(skills: Mapping[str, int], total_level: int | None) -> set[Milestone]:
    """The milestones of the whole account: base level, total level, overall xp."""
    found: set[Milestone] = set()
    # levels grow with xp: the lowest level is the level of the lowest xp
    base = xp.level(min([skills.get(skill, -1) for skill in LEVELLED_SKILLS]))
    found.update(
        Milestone(f"base_level.{lvl}", "base_level", None, lvl)
        for lvl in BASE_LEVELS
        if base >= lvl
    )
    total = total_level or 0
    found.update(
        Milestone(f"total_level.{t}", "total_level", None, t) for t in TOTAL_LEVELS if total >= t
    )
    overall = skills.get("overall", -1)
    found.update(
        Milestone(f"overall_xp.{t}", "overall_xp", "overall", t) for t in OVERALL_XP if overall >= t
    )
    return found


def _per_metric(skills: Mapping[str, int], activities: Mapping[str, int]) -> set[Milestone]:
    """The milestones of single skills and activities, for the metrics given."""
    found: set[Milestone] = set()
    for skill, amount in skills.items():
        if skill not in _LEVELLED:
            continue
        if amount >= _XP_FOR_99:
            found.add(Milestone(f"level_99.{skill}", "level_99", skill, xp.MAX_LEVEL))
        if amount >= xp.MAX_SKILL_XP:
            found.add(Milestone(f"xp_200m.{skill}", "xp_200m", skill, xp.MAX_SKILL_XP))
    for metric, score in activities.items():
        if metric in CLUE_METRICS:
            kind, steps = "clues", CLUES
        elif metric in NOT_BOSSES:
            continue
        else:
            kind, steps = "boss_kc", BOSS_KILLS
        found.update(
            Milestone(f"{kind}.{metric}.{t}", kind, metric, t) for t in steps if score >= t
        )
    return found


_LEVELLED = frozenset(LEVELLED_SKILLS)
_XP_FOR_99 = xp.XP_FOR_LEVEL[xp.MAX_LEVEL]
