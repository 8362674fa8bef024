"""How the synthetic population plays each hiscores activity: the minimum score to be ranked,
a typical score, how many accounts take it up, and how deep its board goes.

Looked up by name, so an activity Jagex adds later still gets the boss defaults."""

from __future__ import annotations

from typing import NamedTuple

from shared.metrics import ACTIVITY_NAMES


class ActivitySpec(NamedTuple):
    minimum: int  # below it the board shows rank -1, score -1
    typical: int  # a typical score among ranked players: the rank curve's midpoint
    take_up: float  # chance that a mid-level account has any score at all
    rank_cap: int


CLUE_ALL = "Clue Scrolls (all)"
CLUE_TIERS = tuple(
    f"Clue Scrolls ({tier})" for tier in ("beginner", "easy", "medium", "hard", "elite", "master")
)

_BOSS = ActivitySpec(5, 100, 0.12, 300_000)
_POPULAR_BOSS = ActivitySpec(5, 150, 0.4, 900_000)
_NEVER = ActivitySpec(1, 1000, 0.0, 100_000)  # seasonal boards only: never ranked on these

_SPECS: dict[str, ActivitySpec] = {
    "Grid Points": _NEVER,
    "League Points": _NEVER,
    "Deadman Points": _NEVER,
    "Bounty Hunter - Hunter": ActivitySpec(2, 20, 0.03, 50_000),
    "Bounty Hunter - Rogue": ActivitySpec(2, 10, 0.03, 50_000),
    "Bounty Hunter (Legacy) - Hunter": ActivitySpec(2, 30, 0.05, 200_000),
    "Bounty Hunter (Legacy) - Rogue": ActivitySpec(2, 15, 0.05, 200_000),
    "Clue Scrolls (beginner)": ActivitySpec(1, 15, 0.6, 1_200_000),
    "Clue Scrolls (easy)": ActivitySpec(1, 40, 0.6, 1_200_000),
    "Clue Scrolls (medium)": ActivitySpec(1, 40, 0.55, 1_200_000),
    "Clue Scrolls (hard)": ActivitySpec(1, 40, 0.5, 1_000_000),
    "Clue Scrolls (elite)": ActivitySpec(1, 15, 0.3, 700_000),
    "Clue Scrolls (master)": ActivitySpec(1, 5, 0.15, 400_000),
    # Clue Scrolls (all) is the sum of the tiers; its take-up is never drawn.
    CLUE_ALL: ActivitySpec(1, 120, 0.0, 1_500_000),
    "LMS - Rank": ActivitySpec(500, 700, 0.2, 400_000),
    "PvP Arena - Rank": ActivitySpec(2525, 2600, 0.05, 80_000),
    "Soul Wars Zeal": ActivitySpec(200, 400, 0.2, 300_000),
    "Rifts closed": ActivitySpec(10, 150, 0.3, 500_000),
    "Colosseum Glory": ActivitySpec(300, 2000, 0.05, 60_000),
    "Collections Logged": ActivitySpec(1, 400, 0.7, 1_500_000),
}
_POPULAR = (
    "Barrows Chests",
    "Wintertodt",
    "Tempoross",
    "Giant Mole",
    "Zulrah",
    "Vorkath",
    "Chambers of Xeric",
    "TzTok-Jad",
    "Scurrius",
    "Obor",
    "Bryophyta",
    "Hespori",
    "King Black Dragon",
)


def spec_for(name: str) -> ActivitySpec:
    if name in _SPECS:
        return _SPECS[name]
    return _POPULAR_BOSS if name in _POPULAR else _BOSS


SPECS: tuple[ActivitySpec, ...] = tuple(spec_for(name) for name in ACTIVITY_NAMES)
CLUE_ALL_INDEX: int | None = ACTIVITY_NAMES.index(CLUE_ALL) if CLUE_ALL in ACTIVITY_NAMES else None
CLUE_TIER_INDEXES: tuple[int, ...] = tuple(
    ACTIVITY_NAMES.index(n) for n in CLUE_TIERS if n in ACTIVITY_NAMES
)
# What an active player may be grinding: anything with take-up, except the derived clue total.
TRAINABLE: tuple[int, ...] = tuple(
    i for i, spec in enumerate(SPECS) if spec.take_up > 0 and i != CLUE_ALL_INDEX
)
