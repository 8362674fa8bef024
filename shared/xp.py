"""The xp table, levels, total and combat level."""

from __future__ import annotations

import bisect
import math

MAX_LEVEL = 99
MAX_VIRTUAL_LEVEL = 126
MAX_SKILL_XP = 200_000_000


def _xp_table() -> tuple[int, ...]:
    table = [0, 0]  # index = level; level 1 needs 0 xp
    points = 0
    for level in range(1, MAX_VIRTUAL_LEVEL):
        points += math.floor(level + 300 * 2 ** (level / 7))
        table.append(points // 4)
    return tuple(table)


XP_FOR_LEVEL: tuple[int, ...] = _xp_table()  # XP_FOR_LEVEL[99] == 13_034_431
_THRESHOLDS = XP_FOR_LEVEL[1:]


def virtual_level(xp: int) -> int:
    """The level for this xp on the 1-126 virtual scale; unranked (-1) is level 1."""
    if xp <= 0:
        return 1
    return bisect.bisect_right(_THRESHOLDS, xp)


def level(xp: int) -> int:
    """The real level, 1-99."""
    return min(virtual_level(xp), MAX_LEVEL)


def combat_level(levels: dict[str, int]) -> int:
    """Combat level from real levels keyed by metric key (missing skills count as level 1,
    Hitpoints as 10)."""
    get = levels.get
    base = 0.25 * (get("defence", 1) + get("hitpoints", 10) + get("prayer", 1) // 2)
    melee = get("attack", 1) + get("strength", 1)
    ranged = math.floor(1.5 * get("ranged", 1))
    magic = math.floor(1.5 * get("magic", 1))
    return math.floor(base + 0.325 * max(melee, ranged, magic))
