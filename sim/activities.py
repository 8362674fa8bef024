"""How the synthetic population plays each hiscores activity: the minimum score to be ranked,
a typical score, how many accounts take it up, how deep its board goes and how many a player
gets in an hour of play.

Looked up by name, so an activity Jagex adds later still gets the boss defaults."""

from __future__ import annotations

from typing import NamedTuple

from shared.metrics import ACTIVITY_NAMES


class ActivitySpec(NamedTuple):
    minimum: int  # below it the board shows rank -1, score -1
    typical: int  # a typical score among ranked players: the rank curve's midpoint
    take_up: float  # chance that a mid-level account has any score at all
    rank_cap: int
    per_hour: float = 20.0  # kills (or points) in an hour spent on it


CLUE_ALL = "Clue Scrolls (all)"
CLUE_TIERS = tuple(
    f"Clue Scrolls ({tier})" for tier in ("beginner", "easy", "medium", "hard", "elite", "master")
)
COLLECTIONS = "Collections Logged"
FIRST_BOSS = "Abyssal Sire"  # the boss block runs from here to the end of the list
LEAGUE_POINTS = "League Points"
DEADMAN_POINTS = "Deadman Points"

_BOSS = ActivitySpec(5, 100, 0.12, 300_000)
_POPULAR_BOSS = ActivitySpec(5, 150, 0.4, 900_000)
_NEVER = ActivitySpec(1, 1000, 0.0, 100_000)  # seasonal boards only: never ranked elsewhere

_SPECS: dict[str, ActivitySpec] = {
    "Grid Points": _NEVER,
    LEAGUE_POINTS: ActivitySpec(1, 8000, 0.0, 800_000, 0.0),
    DEADMAN_POINTS: ActivitySpec(1, 400, 0.0, 200_000, 0.0),
    "Bounty Hunter - Hunter": ActivitySpec(2, 20, 0.03, 50_000, 4),
    "Bounty Hunter - Rogue": ActivitySpec(2, 10, 0.03, 50_000, 2),
    "Bounty Hunter (Legacy) - Hunter": ActivitySpec(2, 30, 0.05, 200_000, 0.0),
    "Bounty Hunter (Legacy) - Rogue": ActivitySpec(2, 15, 0.05, 200_000, 0.0),
    "Clue Scrolls (beginner)": ActivitySpec(1, 15, 0.6, 1_200_000, 10),
    "Clue Scrolls (easy)": ActivitySpec(1, 40, 0.6, 1_200_000, 8),
    "Clue Scrolls (medium)": ActivitySpec(1, 40, 0.55, 1_200_000, 6),
    "Clue Scrolls (hard)": ActivitySpec(1, 40, 0.5, 1_000_000, 4),
    "Clue Scrolls (elite)": ActivitySpec(1, 15, 0.3, 700_000, 2),
    "Clue Scrolls (master)": ActivitySpec(1, 5, 0.15, 400_000, 1),
    # Clue Scrolls (all) is the sum of the tiers; its take-up is never drawn.
    CLUE_ALL: ActivitySpec(1, 120, 0.0, 1_500_000, 0.0),
    "LMS - Rank": ActivitySpec(500, 700, 0.2, 400_000, 0.0),
    "PvP Arena - Rank": ActivitySpec(2525, 2600, 0.05, 80_000, 0.0),
    "Soul Wars Zeal": ActivitySpec(200, 400, 0.2, 300_000, 60),
    "Rifts closed": ActivitySpec(10, 150, 0.3, 500_000, 5),
    "Colosseum Glory": ActivitySpec(300, 2000, 0.05, 60_000, 0.0),
    COLLECTIONS: ActivitySpec(1, 400, 0.7, 1_500_000, 0.3),
    # Raids and wave bosses take long; weak bosses die fast. Scores per hour of play.
    "Chambers of Xeric": ActivitySpec(5, 150, 0.4, 900_000, 2.5),
    "Chambers of Xeric: Challenge Mode": ActivitySpec(5, 50, 0.05, 100_000, 1.5),
    "Theatre of Blood": ActivitySpec(5, 100, 0.1, 300_000, 3),
    "Theatre of Blood: Hard Mode": ActivitySpec(5, 50, 0.03, 80_000, 2),
    "Tombs of Amascut": ActivitySpec(5, 100, 0.2, 500_000, 3),
    "Tombs of Amascut: Expert Mode": ActivitySpec(5, 80, 0.06, 150_000, 2),
    "TzTok-Jad": ActivitySpec(5, 8, 0.4, 900_000, 1),
    "TzKal-Zuk": ActivitySpec(5, 6, 0.02, 30_000, 0.5),
    "Sol Heredit": ActivitySpec(5, 6, 0.02, 30_000, 0.5),
    "Corporeal Beast": ActivitySpec(5, 80, 0.08, 200_000, 5),
    "Nex": ActivitySpec(5, 60, 0.06, 150_000, 4),
    "Giant Mole": ActivitySpec(5, 150, 0.4, 900_000, 40),
    "Wintertodt": ActivitySpec(5, 150, 0.4, 900_000, 5),
    "Tempoross": ActivitySpec(5, 150, 0.4, 900_000, 4),
    "Zalcano": ActivitySpec(5, 150, 0.1, 300_000, 12),
}
_POPULAR = (
    "Barrows Chests",
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
# What a skiller (even a level-3 one) can get a score in.
SKILLING = ("Wintertodt", "Tempoross", "Zalcano", "Rifts closed", COLLECTIONS, *CLUE_TIERS)


def spec_for(name: str) -> ActivitySpec:
    if name in _SPECS:
        return _SPECS[name]
    return _POPULAR_BOSS if name in _POPULAR else _BOSS


def _index(name: str) -> int | None:
    return ACTIVITY_NAMES.index(name) if name in ACTIVITY_NAMES else None


SPECS: tuple[ActivitySpec, ...] = tuple(spec_for(name) for name in ACTIVITY_NAMES)
CLUE_ALL_INDEX = _index(CLUE_ALL)
CLUE_TIER_INDEXES: tuple[int, ...] = tuple(i for n in CLUE_TIERS if (i := _index(n)) is not None)
COLLECTIONS_INDEX = _index(COLLECTIONS)
SKILLING_INDEXES: tuple[int, ...] = tuple(i for n in SKILLING if (i := _index(n)) is not None)
_FIRST_BOSS = _index(FIRST_BOSS) or len(ACTIVITY_NAMES)
BOSS_INDEXES: tuple[int, ...] = tuple(
    i for i in range(_FIRST_BOSS, len(ACTIVITY_NAMES)) if i not in SKILLING_INDEXES
)
# What an active player may be grinding: anything with take-up and an hourly rate, except the
# derived clue total.
TRAINABLE: tuple[int, ...] = tuple(
    i
    for i, spec in enumerate(SPECS)
    if spec.take_up > 0 and spec.per_hour > 0 and i != CLUE_ALL_INDEX
)
